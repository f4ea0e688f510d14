//! Claims → `Principal` mapping: which claim holds what, and how values are read.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use streamgate_core::{Principal, PrincipalKind};

use crate::ROOM_PERMISSION_PREFIX;

/// The names of the claims a [`JwtAuthenticator`](crate::JwtAuthenticator) maps to a
/// [`Principal`]. Every name is a top-level claim of the token's payload.
///
/// ```
/// use streamgate_auth::ClaimNames;
///
/// let names = ClaimNames::default().tenant("org_id").roles("groups");
/// assert_eq!(names.user, "sub");
/// assert_eq!(names.tenant, "org_id");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimNames {
    /// The user id (default `sub`); a missing or empty value refuses the token.
    pub user: String,
    /// The tenant (default `tenant`): a string or an integer.
    pub tenant: String,
    /// The principal kind (default `kind`): `guest`, `member`, `supervisor` or `service`.
    pub kind: String,
    /// Roles (default `roles`): an array of strings or one space-separated string.
    pub roles: String,
    /// Permissions (default `permissions`): an array of strings or one space-separated string
    /// (so `scope` works too).
    pub permissions: String,
    /// The room allow-list (default `rooms`): an array of room ids or `kind:prefix*` patterns.
    pub rooms: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user: "sub".into(),
            tenant: "tenant".into(),
            kind: "kind".into(),
            roles: "roles".into(),
            permissions: "permissions".into(),
            rooms: "rooms".into(),
        }
    }
}

impl ClaimNames {
    /// Sets the user id claim.
    #[must_use]
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.user = name.into();
        self
    }

    /// Sets the tenant claim.
    #[must_use]
    pub fn tenant(mut self, name: impl Into<String>) -> Self {
        self.tenant = name.into();
        self
    }

    /// Sets the kind claim.
    #[must_use]
    pub fn kind(mut self, name: impl Into<String>) -> Self {
        self.kind = name.into();
        self
    }

    /// Sets the roles claim.
    #[must_use]
    pub fn roles(mut self, name: impl Into<String>) -> Self {
        self.roles = name.into();
        self
    }

    /// Sets the permissions claim.
    #[must_use]
    pub fn permissions(mut self, name: impl Into<String>) -> Self {
        self.permissions = name.into();
        self
    }

    /// Sets the room allow-list claim.
    #[must_use]
    pub fn rooms(mut self, name: impl Into<String>) -> Self {
        self.rooms = name.into();
        self
    }

    /// Maps verified claims to a principal; `Err` carries the reason, for the debug log only.
    pub(crate) fn principal(
        &self,
        claims: &Map<String, Value>,
        default_kind: PrincipalKind,
        require_tenant: bool,
    ) -> Result<Principal, &'static str> {
        let user = match claims.get(&self.user) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err("missing or empty user claim"),
        };
        let tenant = match claims.get(&self.tenant) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Some(n.to_string()),
            Some(_) => return Err("tenant claim is neither a string nor an integer"),
        };
        if require_tenant && tenant.is_none() {
            return Err("missing tenant claim");
        }
        let kind = match claims.get(&self.kind) {
            None | Some(Value::Null) => default_kind,
            Some(Value::String(s)) => match s.as_str() {
                "guest" => PrincipalKind::Guest,
                "member" => PrincipalKind::Member,
                "supervisor" => PrincipalKind::Supervisor,
                "service" => PrincipalKind::Service,
                _ => return Err("unknown principal kind"),
            },
            Some(_) => return Err("kind claim is not a string"),
        };
        let roles = strings(claims.get(&self.roles)).ok_or("roles claim is malformed")?;
        let mut permissions =
            strings(claims.get(&self.permissions)).ok_or("permissions claim is malformed")?;
        match claims.get(&self.rooms) {
            None | Some(Value::Null) => {}
            Some(value) => {
                let rooms = strings(Some(value)).ok_or("rooms claim is malformed")?;
                if rooms.is_empty() {
                    // An empty allow-list allows nothing; the bare prefix matches no room.
                    permissions.push(ROOM_PERMISSION_PREFIX.to_owned());
                }
                permissions.extend(
                    rooms
                        .into_iter()
                        .map(|r| format!("{ROOM_PERMISSION_PREFIX}{r}")),
                );
            }
        }
        // jsonwebtoken accepts a fractional `exp` too; without this the session would never
        // expire.
        let expires_at = claims.get("exp").and_then(|exp| {
            exp.as_u64().or_else(|| {
                exp.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
        });
        Ok(Principal {
            user: Some(user),
            tenant,
            kind,
            roles,
            permissions,
            expires_at,
        })
    }
}

/// An array of strings, or one space-separated string; absent is empty.
fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) => Some(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_fractional_exp_still_expires() {
        let claims = map(json!({ "sub": "u1", "exp": 1_735_689_600.0 }));
        let p = ClaimNames::default().principal(&claims, PrincipalKind::Member, false);
        assert_eq!(p.map(|p| p.expires_at), Ok(Some(1_735_689_600)));
    }

    #[test]
    fn claims_map_to_a_principal() {
        let names = ClaimNames::default().tenant("org_id").permissions("scope");
        let claims = map(json!({
            "sub": "u1", "org_id": 42, "kind": "supervisor", "roles": ["agent"],
            "scope": "read write", "rooms": ["conversation:42.*"], "exp": 99
        }));
        let p = names.principal(&claims, PrincipalKind::Member, false);
        assert_eq!(
            p,
            Ok(Principal {
                user: Some("u1".into()),
                tenant: Some("42".into()),
                kind: PrincipalKind::Supervisor,
                roles: vec!["agent".into()],
                permissions: vec![
                    "read".into(),
                    "write".into(),
                    "room:conversation:42.*".into()
                ],
                expires_at: Some(99),
            })
        );
    }

    #[test]
    fn bad_claims_are_refused() {
        let names = ClaimNames::default();
        for claims in [
            json!({}),
            json!({"sub": ""}),
            json!({"sub": 7}),
            json!({"sub": "u", "kind": "root"}),
            json!({"sub": "u", "roles": [1]}),
            json!({"sub": "u", "tenant": {"id": 1}}),
        ] {
            assert!(
                names
                    .principal(&map(claims.clone()), PrincipalKind::Member, false)
                    .is_err(),
                "{claims}"
            );
        }
        let no_tenant = map(json!({"sub": "u"}));
        assert!(
            names
                .principal(&no_tenant, PrincipalKind::Member, true)
                .is_err()
        );
    }

    #[test]
    fn an_empty_room_list_allows_nothing() {
        let claims = map(json!({"sub": "u", "rooms": []}));
        let p = ClaimNames::default().principal(&claims, PrincipalKind::Member, false);
        assert_eq!(p.map(|p| p.permissions), Ok(vec!["room:".to_owned()]));
    }
}
