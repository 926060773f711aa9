"""Who may do what: API tokens, their roles and scopes, and the one table that says which
permission every endpoint needs. Pure except for `tokens`' store and file helpers."""

from kade.auth.policy import (
    PERMISSIONS,
    Decision,
    Permission,
    Principal,
    Role,
    can_deploy_app,
    can_write_kv,
    needed_permission,
    redact_env,
)
from kade.auth.tokens import (
    MANAGEMENT_TOKEN_FILE,
    TokenRecord,
    authenticate,
    create_token,
    ensure_token_file,
    parse_token,
    read_token_file,
)

__all__ = [
    "MANAGEMENT_TOKEN_FILE", "PERMISSIONS", "Decision", "Permission", "Principal", "Role",
    "TokenRecord", "authenticate", "can_deploy_app", "can_write_kv", "create_token",
    "ensure_token_file", "needed_permission", "parse_token", "read_token_file", "redact_env",
]
