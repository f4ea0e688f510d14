use serde::{Deserialize, Serialize};

/// What kind of party a principal is; room policies and later authorizers key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// Unauthenticated or restricted visitor.
    Guest,
    /// A regular user.
    #[default]
    Member,
    /// A user with moderation rights.
    Supervisor,
    /// A backend service or producer.
    Service,
}

/// Who a session is: established once at the handshake (and replaced on token refresh).
///
/// ```
/// use streamgate_core::{Principal, PrincipalKind};
///
/// let p = Principal::user("u1").with_tenant("acme").with_roles(["agent"]);
/// assert_eq!(p.user.as_deref(), Some("u1"));
/// assert_eq!(p.kind, PrincipalKind::Member);
/// assert!(p.has_role("agent"));
/// assert!(Principal::anonymous().is_anonymous());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Principal {
    /// User id; `None` for anonymous sessions.
    pub user: Option<String>,
    /// Tenant (organisation) the principal belongs to.
    pub tenant: Option<String>,
    /// Kind of principal.
    pub kind: PrincipalKind,
    /// Roles.
    pub roles: Vec<String>,
    /// Fine-grained permissions.
    pub permissions: Vec<String>,
    /// Credential expiry, seconds since the Unix epoch.
    pub expires_at: Option<u64>,
}

impl Principal {
    /// A member with the given user id.
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            user: Some(id.into()),
            ..Self::default()
        }
    }

    /// An anonymous guest (only admitted when anonymous access is explicitly enabled).
    #[must_use]
    pub fn anonymous() -> Self {
        Self {
            kind: PrincipalKind::Guest,
            ..Self::default()
        }
    }

    /// Whether no user is attached.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the kind.
    #[must_use]
    pub fn with_kind(mut self, kind: PrincipalKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the roles.
    #[must_use]
    pub fn with_roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the expiry (seconds since the Unix epoch).
    #[must_use]
    pub fn with_expiry(mut self, expires_at: u64) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Whether the principal has `role`.
    #[must_use]
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}
