"""Credentials of every kind the exporter must redact, and prose it must leave alone.

``SECRET_TEXTS[kind] = (text, needle)``: ``text`` carries the credential as a user or a
provider would write it; ``needle`` is the secret part that must never reach a sink.
"""

from __future__ import annotations

SECRET_TEXTS: dict[str, tuple[str, str]] = {
    "openai": ("sk-proj-Q1w2E3r4T5y6U7i8O9p0AsDfGhJkL", "Q1w2E3r4T5y6U7i8O9p0"),
    "short sk-": ("use sk-abc12345 now", "abc12345"),
    "anthropic": ("sk-ant-api03-ToolArgumentKey1234567890", "ToolArgumentKey"),
    "posthog": ("phc_testProjectKey0123456789abcdefXYZ", "testProjectKey"),
    "aws akia": ("AKIAIOSFODNN7EXAMPLE", "IOSFODNN7"),
    "aws asia": ("ASIAY34FZKBOKMUTVV7A", "Y34FZKBOKMUTVV7A"),
    "aws secret": ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrX"),
    "jwt": (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlF",
        "dozjgNryP4J3jVmN",
    ),
    "github pat": ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "11ABCDEFG01"),
    "github ghp": ("ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "AbCdEfGhIjKlMn"),
    "google": ("AIzaSyD-9tSrke72I6e1H5HkXeGiSOHnFGJ9Xd0", "9tSrke72I6e1H5Hk"),
    "stripe live": ("sk_live_51Habcdef0123456789", "51Habcdef0123456789"),
    "stripe restricted": ("rk_live_51Habcdef0123456789", "51Habcdef0123456789"),
    "hugging face": ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "abcdefghijklmnopqrstuvwxyzABCDEFGH"),
    "slack": ("xoxb-1234567890-abcdefghijklmn", "1234567890-abcdefghij"),
    "bearer": ("Authorization: Bearer abc.def-ghi_jkl.mno123", "abc.def-ghi_jkl"),
    "basic": ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    "dsn": ("postgres://admin:s3cr3t-pw@db.example.com:5432/app", "s3cr3t-pw"),
    "url userinfo": ("https://svc:Pa55w0rd-x@api.example.com/v1", "Pa55w0rd-x"),
    "url api_key": ("https://api.example.com/v1?api_key=qwerty12345&x=1", "qwerty12345"),
    "url token": ("GET https://example.com/cb?token=zxcvb98765 failed", "zxcvb98765"),
    "password pair": ("connect failed: password=hunter2-horse", "hunter2-horse"),
    "quoted json": ('{"password": "correct horse battery"}', "correct horse battery"),
    "private key": (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAu1SU1L7VLPHCgcBIjA\n"
        "-----END RSA PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEAu1SU1L7VLPHCgcBIjA",
    ),
}

PROSE = (
    "The quick brown fox asked for a password reset link. A basic understanding of tokens "
    "helps: the model reads each token, and a key insight is that input tokens cost less. "
    "See https://example.com/docs?page=2&lang=en for task-1234 in Asia, with sk-learn and "
    "scikit-learn 1.5; the desk-2024 plan: 12:30 at Café Zürich. user_id=42, max_tokens=100, "
    "session 7f3c, api docs at /v1/models, e-mail ops@example.com, C:/tmp/file_name.txt."
)
