module trusted-issuer/tests/goverify

go 1.22
