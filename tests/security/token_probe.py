"""Probe a token's private keys with python-pkcs11 directly, in a process of its own.

Run as ``python -m tests.security.token_probe LABEL PIN_FILE`` with SOFTHSM2_CONF naming the token's
configuration. A separate process because a PKCS#11 module reads its configuration once per process,
and the test process may already have the session's other token open. Prints JSON: for every private
key, its protective attributes and what happened on each attempt to get its material out. Nothing
here goes through trusted-issuer's code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pkcs11
import pkcs11.exceptions as p11err
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from issuer.settings import DEFAULT_PKCS11_MODULE

SECRET_ATTRIBUTES = {
    "rsa": [Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.PRIME_2, Attribute.COEFFICIENT],
    "other": [Attribute.VALUE],
}


def _attempt(action: Callable[[], Any]) -> str:
    """'refused: <CKR class>' when the token says no, 'ALLOWED' when it complies."""
    try:
        action()
    except p11err.PKCS11Error as err:
        return f"refused: {type(err).__name__}"
    return "ALLOWED"


def _probe_key(key: Any, wrapper: Any) -> dict[str, Any]:
    family = "rsa" if key.key_type == KeyType.RSA else "other"
    report: dict[str, Any] = {"label": key.label, "family": family}
    for name in ("SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE", "PRIVATE"):
        report[name] = bool(key[getattr(Attribute, name)])
    for attribute in SECRET_ATTRIBUTES[family]:
        report[f"read {attribute.name}"] = _attempt(lambda a=attribute: key[a])
    for mechanism in (Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_KEY_WRAP):
        report[f"wrap out ({mechanism.name})"] = _attempt(
            lambda m=mechanism: wrapper.wrap_key(key, mechanism=m)
        )
    report["set EXTRACTABLE"] = _attempt(lambda: key.__setitem__(Attribute.EXTRACTABLE, True))
    report["clear SENSITIVE"] = _attempt(lambda: key.__setitem__(Attribute.SENSITIVE, False))
    report["copy as extractable"] = _attempt(
        lambda: key.copy({Attribute.EXTRACTABLE: True, Attribute.TOKEN: False})
    )
    return report


def probe(label: str, pin: str) -> dict[str, Any]:
    lib = pkcs11.lib(DEFAULT_PKCS11_MODULE)
    token = lib.get_token(token_label=label)
    with token.open() as public_session:
        visible_without_login = len(
            list(public_session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        )
    keys: list[dict[str, Any]] = []
    with token.open(user_pin=pin, rw=True) as session:
        wrapper = session.generate_key(
            KeyType.AES, 256, template={Attribute.TOKEN: False, Attribute.WRAP: True}
        )
        for key in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}):
            keys.append(_probe_key(key, wrapper))
    return {"visible_without_login": visible_without_login, "keys": keys}


def main() -> None:
    label, pin_file = sys.argv[1], sys.argv[2]
    pin = Path(pin_file).read_text().strip()
    json.dump(probe(label, pin), sys.stdout)


if __name__ == "__main__":
    main()
