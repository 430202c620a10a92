"""The ``trusted-issuer`` command: parses arguments and calls the signer. Bad input exits 2 with one line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from issuer.durations import parse_duration
from issuer.errors import ConfigurationError, TrustedIssuerError
from issuer.settings import Settings
from issuer.signer import key_wrapping
from issuer.signer.api import Algorithm, IssuerKey, Policy, SignerPool, SigningRequest, public_key_fingerprint
from issuer.signer.devtoken import BACKEND_DIRS, BACKENDS, DEFAULT_LABEL, init_dev_token
from issuer.signer.keys import KEY_WRAPS

EXIT_BAD_INPUT = 2


class UsageError(TrustedIssuerError):
    default_reason = "BadInput"


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {what} {path}: {err.strerror}") from None


def _algorithm(text: str) -> Algorithm:
    try:
        return Algorithm.parse(text)
    except TrustedIssuerError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def _token_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("token (flags override TRUSTED_ISSUER_* variables)")
    group.add_argument("--module", help="PKCS#11 module path (TRUSTED_ISSUER_PKCS11_MODULE)")
    group.add_argument("--token-label", help="token label (TRUSTED_ISSUER_TOKEN_LABEL)")
    group.add_argument("--token-serial", help="token serial (TRUSTED_ISSUER_TOKEN_SERIAL)")
    group.add_argument(
        "--pin-file",
        type=Path,
        help="file holding the user PIN (TRUSTED_ISSUER_PIN_FILE; else TRUSTED_ISSUER_PIN)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        pkcs11_module=args.module,
        token_label=args.token_label,
        token_serial=args.token_serial,
        pin_file=args.pin_file,
        workers=1,
    )


def _pool(settings: Settings) -> SignerPool:
    return SignerPool(1, start_method=settings.worker_start_method)  # type: ignore[arg-type]


def cmd_init_dev_token(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else BACKEND_DIRS[args.backend]
    token, created = init_dev_token(directory, args.label, args.backend, reset=args.reset)
    state = "created" if created else "already exists"
    print(f"# {args.backend} token {token.label!r} {state} in {directory.resolve()}", file=sys.stderr)
    for name, value in token.env().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with _pool(settings) as pool:
        reports = pool.list_keys.blocking(settings.token())
    rows = [
        {
            **r.handle.to_status(),
            "sensitive": r.sensitive,
            "extractable": r.extractable,
            "alwaysSensitive": r.always_sensitive,
            "neverExtractable": r.never_extractable,
        }
        for r in reports
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'LABEL':32} {'ALGORITHM':11} {'ID':32} {'SENSITIVE':9} {'EXTRACTABLE':11} PUBLIC-KEY-SHA256")
    for row in rows:
        print(
            f"{row['keyLabel']:32} {row['algorithm']:11} {row['keyID']:32} {row['sensitive']!s:9} "
            f"{row['extractable']!s:11} {row['publicKeySHA256']}"
        )
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """What the token can do for us: info, algorithms, signing mechanisms, unwrap, a signing rate."""
    if not 0 < args.seconds <= 10:
        raise UsageError(f"--seconds must be above 0 and at most 10, not {args.seconds}")
    settings = _settings(args)
    with _pool(settings) as pool:
        probe = pool.probe_token.blocking(settings.token(), args.seconds)
    if args.json:
        print(json.dumps(probe.to_json(), indent=2))
        return 0
    print(f"token:     {probe.label!r} serial {probe.serial}")
    print(
        f"token by:  {probe.manufacturer} {probe.model}, firmware {probe.firmware}, hardware {probe.hardware}"
    )
    print(f"module:    {probe.module}")
    print(f"{'ALGORITHM':11} {'GENERATE':8} {'SIGN WITH':18} {'SIGS/S':>8}  NOTE")
    for a in probe.algorithms:
        mechanism = f"CKM_{a.signing_mechanism}" if a.signing_mechanism else "-"
        rate = f"{a.signatures_per_second:.0f}" if a.signatures_per_second is not None else "-"
        note = a.why_not or ("digest computed outside the token" if a.digest_here else "")
        row = f"{a.algorithm.value:11} {'yes' if a.can_generate else 'no':8} {mechanism:18} {rate:>8}  {note}"
        print(row.rstrip())
    yes_no = {True: "offered", False: "not offered"}
    wraps = ", ".join(f"CKM_{name}" for name in probe.key_wraps) or "none"
    print(
        f"unwrap:    CKM_RSA_PKCS_OAEP {yes_no[probe.unwrap_rsa_oaep]}; "
        f"CA key wrapped with: {wraps} (import {'possible' if probe.can_import else 'impossible'})"
    )
    if probe.quirks:
        print(f"quirks:    {probe.quirks}")
    kind = {True: "session keys", False: "token objects, destroyed", None: "no keys"}[probe.session_keys]
    print(f"left behind: {probe.objects_left_behind} objects (the probe signed with {kind})")
    return 0


def cmd_ca_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    token = settings.token()
    duration = parse_duration(args.duration)
    with _pool(settings) as pool:
        if args.existing_key:
            handle = pool.find_key.blocking(token, args.key_label)
            if handle.algorithm is not args.algorithm:
                raise UsageError(
                    f"key {args.key_label!r} is {handle.algorithm.value}, not {args.algorithm.value}"
                )
        else:
            handle = pool.generate_key.blocking(token, args.algorithm, args.key_label)
        pem = pool.create_self_signed_ca.blocking(
            token, handle, args.subject, duration, path_length=args.path_len, rsa_pss=args.rsa_pss
        )
    Path(args.out).write_bytes(pem)
    print(json.dumps({"keyHandle": handle.to_status(), "caCertificate": args.out}, indent=2))
    return 0


def _policy(args: argparse.Namespace) -> Policy:
    if args.policy is None:
        # The CLI is the CA administrator's tool: it may sign intermediate CAs unless a policy says no.
        return Policy(allow_ca=True)
    try:
        spec = yaml.safe_load(_read(args.policy, "policy file"))
    except yaml.YAMLError as err:
        raise UsageError(f"policy file {args.policy} is not YAML: {err}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"policy file {args.policy} must hold a mapping")
    return Policy.from_spec(spec)


def cmd_sign(args: argparse.Namespace) -> int:
    settings = _settings(args)
    token = settings.token()
    ca_pem = _read(args.ca_cert, "CA certificate")
    request = SigningRequest(
        csr_pem=_read(args.csr, "CSR"),
        duration=parse_duration(args.duration) if args.duration else None,
        is_ca=args.is_ca,
        usages=tuple(args.usage or ()),
    )
    policy = _policy(args)
    with _pool(settings) as pool:
        handle = pool.find_key.blocking(token, args.key_label)
        bundle = pool.sign.blocking(IssuerKey(token, handle, ca_pem, policy, args.rsa_pss), request)
    sys.stdout.write(bundle.chain_pem.decode())
    if args.ca_out:
        Path(args.ca_out).write_bytes(bundle.ca_pem)
    return 0


def cmd_provision_wrap(args: argparse.Namespace) -> int:
    """Offline: wrap a CA private key for a token's wrapping key. Touches no token; writes only the
    envelope (ciphertext and public data), created exclusively so nothing is overwritten."""
    wrapping = key_wrapping.load_wrapping_public_key(_read(args.wrapping_key, "wrapping key"))
    key_wrapping.check_expected_wrapping_key(wrapping, args.expect_sha256)
    password = (
        _read(args.key_password_file, "key passphrase file").rstrip(b"\r\n")
        if args.key_password_file
        else None
    )
    key = key_wrapping.load_ca_private_key(_read(args.key, "CA key"), password)
    envelope = key_wrapping.wrap_private_key(wrapping, key, hash_name=args.oaep_hash, key_wrap=args.key_wrap)
    del key, password
    out = Path(args.out)
    try:
        with out.open("xb") as handle:
            handle.write(envelope)
    except FileExistsError:
        raise UsageError(f"{out} already exists: choose another --out") from None
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror}") from None
    parsed = key_wrapping.parse_wrapped_key(envelope)
    print(
        json.dumps(
            {
                "out": str(out),
                "wrappingKeySHA256": parsed.wrapping_key_sha256,
                "parameter": parsed.parameter,
                "algorithm": parsed.algorithm.value,
                "publicKeySHA256": parsed.public_key_sha256,
            },
            indent=2,
        )
    )
    return 0


def cmd_provision_fingerprint(args: argparse.Namespace) -> int:
    """Print the SHA-256 of a wrapping public key, as status and attestation evidence spell it."""
    wrapping = key_wrapping.load_wrapping_public_key(_read(args.wrapping_key, "wrapping key"))
    print(public_key_fingerprint(wrapping))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import dataclasses

    import kopf

    settings = Settings.from_env()  # fail fast, with one line, before anything starts

    # Registers kopf's start-up handler, which registers the issuer handlers of the served kinds.
    from issuer.controller.replica.lifecycle import run_replica

    if args.no_leader_election:
        settings = dataclasses.replace(settings, leader_election=False)
    log_format = {"full": kopf.LogFormat.FULL, "plain": kopf.LogFormat.PLAIN, "json": kopf.LogFormat.JSON}
    if args.log_format not in log_format:
        raise ConfigurationError(f"log format {args.log_format!r} is not one of full, plain, json")
    kopf.configure(verbose=args.verbose, log_format=log_format[args.log_format])
    return run_replica(settings, namespaces=args.namespace or (), liveness_endpoint=args.liveness)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trusted-issuer",
        description="A cert-manager issuer whose CA key lives only inside a PKCS#11 token.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator (kopf) against the cluster in KUBECONFIG")
    run.add_argument("--namespace", action="append", help="watch only this namespace (repeatable)")
    run.add_argument(
        "--liveness",
        help="also serve kopf's liveness endpoint (leader only), e.g. http://0.0.0.0:8081/healthz; "
        "the probes of every role are on TRUSTED_ISSUER_HEALTH_PORT (/healthz, /readyz)",
    )
    run.add_argument(
        "--no-leader-election",
        action="store_true",
        help="sign without holding the Lease (one replica only; TRUSTED_ISSUER_LEADER_ELECTION=false)",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.add_argument(
        "--log-format",
        choices=("full", "plain", "json"),
        default=os.environ.get("TRUSTED_ISSUER_LOG_FORMAT", "full"),
        help="log line format; json puts audit fields in their own keys (env TRUSTED_ISSUER_LOG_FORMAT)",
    )
    run.set_defaults(run=cmd_run)

    hsm = commands.add_parser("hsm", help="token set-up and inspection").add_subparsers(
        dest="hsm", required=True
    )
    init = hsm.add_parser(
        "init-dev-token",
        help="create a development token (SoftHSM2, a TPM 2.0 simulator or opencryptoki) and print its "
        "environment",
    )
    init.add_argument(
        "--backend",
        choices=BACKENDS,
        default="softhsm",
        help="softhsm (default); tpm: swtpm behind tpm2-abrmd with tpm2-pkcs11 (its daemons keep running); "
        "opencryptoki: the machine's one soft token (slot 3, re-initialised unless it is ours; needs root "
        "or the pkcs11 group)",
    )
    init.add_argument("--dir", help="token directory (default .dev/BACKEND)")
    init.add_argument(
        "--reset",
        action="store_true",
        help="opencryptoki only: wipe the machine's soft token first if another label holds it",
    )
    init.add_argument("--label", default=DEFAULT_LABEL, help=f"token label (default {DEFAULT_LABEL})")
    init.set_defaults(run=cmd_init_dev_token)
    keys = hsm.add_parser("keys", help="list key handles in the token (never key material)")
    _token_args(keys)
    keys.add_argument("--json", action="store_true", help="print JSON")
    keys.set_defaults(run=cmd_keys)
    probe = hsm.add_parser(
        "probe",
        help="what the token can do for us: algorithms, signing mechanisms, unwrap, a signing rate",
    )
    _token_args(probe)
    probe.add_argument("--json", action="store_true", help="print JSON")
    probe.add_argument(
        "--seconds", type=float, default=0.5, help="signing time per algorithm (default 0.5; session keys)"
    )
    probe.set_defaults(run=cmd_probe)

    ca = commands.add_parser("ca", help="CA certificates").add_subparsers(dest="ca", required=True)
    create = ca.add_parser(
        "create", help="generate a key in the token and a self-signed CA certificate for it"
    )
    _token_args(create)
    create.add_argument("--key-label", required=True)
    create.add_argument(
        "--algorithm",
        type=_algorithm,
        default=Algorithm.ECDSA_P256,
        help="ecdsa-p256 (default), ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519",
    )
    create.add_argument("--subject", required=True, help='RFC 4514 name, e.g. "CN=mesh root,O=example"')
    create.add_argument("--duration", default="87600h", help="Go duration (default 87600h, ten years)")
    create.add_argument("--path-len", type=int, default=None, help="basicConstraints pathLenConstraint")
    create.add_argument("--rsa-pss", action="store_true", help="sign with RSASSA-PSS instead of PKCS#1 v1.5")
    create.add_argument(
        "--existing-key", action="store_true", help="certify the key already under --key-label"
    )
    create.add_argument("--out", required=True, help="where to write the CA certificate (PEM)")
    create.set_defaults(run=cmd_ca_create)

    sign = commands.add_parser("sign", help="sign a CSR; prints the chain (leaf first) as PEM")
    _token_args(sign)
    sign.add_argument("--key-label", required=True)
    sign.add_argument("--ca-cert", required=True, help="the issuing CA certificate (and chain), PEM")
    sign.add_argument("--csr", required=True, help="the PKCS#10 request, PEM")
    sign.add_argument("--duration", help="Go duration, e.g. 24h (default: the policy's, 2160h)")
    sign.add_argument(
        "--usage", action="append", help="a cert-manager usage, e.g. 'server auth' (repeatable)"
    )
    sign.add_argument("--is-ca", action="store_true", help="issue a CA certificate")
    sign.add_argument("--rsa-pss", action="store_true", help="sign with RSASSA-PSS (RSA CA keys)")
    sign.add_argument("--policy", help="YAML/JSON file in the shape of an issuer's spec.policy")
    sign.add_argument("--ca-out", help="also write the root CA certificate (PEM) here")
    sign.set_defaults(run=cmd_sign)

    prov = commands.add_parser(
        "provision", help="bring your own CA key: wrap it offline for a token's wrapping key"
    ).add_subparsers(dest="provision", required=True)
    wrap = prov.add_parser(
        "wrap",
        help="wrap a CA private key (RSA-OAEP + AES-KWP or AES-CBC-PAD) for the wrapping key in an "
        "issuer's status",
    )
    wrap.add_argument("--wrapping-key", required=True, help="the wrapping public key (PEM), from status")
    wrap.add_argument("--key", required=True, help="the CA private key (PEM or DER, PKCS#8 or traditional)")
    wrap.add_argument("--key-password-file", help="file holding the CA key's passphrase, if encrypted")
    wrap.add_argument("--out", required=True, help="where to write the envelope (must not exist)")
    wrap.add_argument(
        "--oaep-hash",
        choices=key_wrapping.OAEP_HASHES,
        default=key_wrapping.DEFAULT_OAEP_HASH,
        help="RSA-OAEP hash (default sha1: SoftHSM2 2.6.1 unwraps no other); "
        "choose one the status lists in parameters",
    )
    wrap.add_argument(
        "--key-wrap",
        choices=tuple(KEY_WRAPS),
        default=key_wrapping.DEFAULT_KEY_WRAP,
        help="how the CA key is wrapped under the AES key: aes-kwp (RFC 5649, default) or aes-cbc-pad "
        "for tokens without AES key wrap (opencryptoki); choose one the status lists in parameters",
    )
    wrap.add_argument(
        "--expect-sha256",
        help="required: the wrapping key's SHA-256 from a second channel, never from status "
        "(`trusted-issuer hsm keys` on the token's node, or attestation evidence); refuses any other key",
    )
    wrap.set_defaults(run=cmd_provision_wrap)
    fingerprint = prov.add_parser("fingerprint", help="print a wrapping public key's SHA-256")
    fingerprint.add_argument("--wrapping-key", required=True, help="the wrapping public key (PEM)")
    fingerprint.set_defaults(run=cmd_provision_fingerprint)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: Any = args.run(args)
    except TrustedIssuerError as err:
        print(f"trusted-issuer: error: {err.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    return int(result)


if __name__ == "__main__":
    sys.exit(main())
