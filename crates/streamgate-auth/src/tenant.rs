//! `TenantPolicy`: tenant isolation, per-room-kind rules, guest restrictions.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use streamgate_core::{Action, Authorizer, Principal, PrincipalKind};
use streamgate_protocol::{ErrorCode, RoomId};

/// The permission that lets a [`PrincipalKind::Service`] principal reach tenant-scoped rooms
/// of every tenant. Grant it only to trusted backends (an API key scope, a service token).
pub const CROSS_TENANT_PERMISSION: &str = "streamgate:cross-tenant";

/// Permissions starting with this prefix form a principal's room allow-list: `room:` followed
/// by a room id (`room:conversation:acme.42`) or a prefix pattern ending in `*`
/// (`room:conversation:acme.*`). A principal with at least one such permission reaches only
/// the rooms listed, on top of every other rule; the bare prefix `room:` matches no room. The
/// JWT authenticator turns the `rooms` claim into these permissions.
pub const ROOM_PERMISSION_PREFIX: &str = "room:";

/// Who may do something: anyone when both lists are empty, otherwise a principal with at least
/// one of the roles or one of the permissions.
///
/// ```
/// use streamgate_auth::Requirement;
/// use streamgate_core::Principal;
///
/// let agents = Requirement::role("agent");
/// assert!(agents.allows(&Principal::user("u1").with_roles(["agent"])));
/// assert!(!agents.allows(&Principal::user("u2")));
/// assert!(Requirement::default().allows(&Principal::user("u2")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Requirement {
    /// Any of these roles.
    pub roles: Vec<String>,
    /// Any of these permissions.
    pub permissions: Vec<String>,
}

impl Requirement {
    /// Requires `role`.
    pub fn role(role: impl Into<String>) -> Self {
        Self {
            roles: vec![role.into()],
            permissions: Vec::new(),
        }
    }

    /// Requires `permission`.
    pub fn permission(permission: impl Into<String>) -> Self {
        Self {
            roles: Vec::new(),
            permissions: vec![permission.into()],
        }
    }

    /// Also accepts `role`.
    #[must_use]
    pub fn or_role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Also accepts `permission`.
    #[must_use]
    pub fn or_permission(mut self, permission: impl Into<String>) -> Self {
        self.permissions.push(permission.into());
        self
    }

    /// Whether `principal` meets the requirement.
    #[must_use]
    pub fn allows(&self, principal: &Principal) -> bool {
        (self.roles.is_empty() && self.permissions.is_empty())
            || self.roles.iter().any(|r| principal.has_role(r))
            || self
                .permissions
                .iter()
                .any(|p| principal.permissions.contains(p))
    }
}

/// What each action on rooms of one kind requires.
///
/// ```
/// use streamgate_auth::{KindRules, Requirement};
///
/// let rules = KindRules::default()
///     .publish(Requirement::role("agent"))
///     .command(Requirement::permission("runs:cancel"));
/// assert!(rules.join.roles.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KindRules {
    /// To join (a refusal is `ROOM_ACCESS_DENIED`).
    pub join: Requirement,
    /// To publish from a client, typing indicators included (`PERMISSION_DENIED`).
    pub publish: Requirement,
    /// To send a command about a room of the kind (`PERMISSION_DENIED`).
    pub command: Requirement,
}

impl KindRules {
    /// Sets the join requirement.
    #[must_use]
    pub fn join(mut self, requirement: Requirement) -> Self {
        self.join = requirement;
        self
    }

    /// Sets the publish requirement.
    #[must_use]
    pub fn publish(mut self, requirement: Requirement) -> Self {
        self.publish = requirement;
        self
    }

    /// Sets the command requirement.
    #[must_use]
    pub fn command(mut self, requirement: Requirement) -> Self {
        self.command = requirement;
        self
    }
}

/// Restrictions on guests (principals of kind [`PrincipalKind::Guest`], anonymous ones
/// included), on top of the tenant rules.
///
/// ```
/// use streamgate_auth::GuestRules;
///
/// let guests = GuestRules::default().room_kinds(["lobby"]);
/// assert!(guests.read_only);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestRules {
    /// Guests may only join: no publishing, no commands (default `true`).
    pub read_only: bool,
    /// The only room kinds guests may reach; `None` (the default) for no restriction by kind.
    pub room_kinds: Option<BTreeSet<String>>,
}

impl Default for GuestRules {
    fn default() -> Self {
        Self {
            read_only: true,
            room_kinds: None,
        }
    }
}

impl GuestRules {
    /// Sets whether guests are read-only.
    #[must_use]
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Restricts guests to rooms of these kinds.
    #[must_use]
    pub fn room_kinds<I: IntoIterator<Item = S>, S: Into<String>>(mut self, kinds: I) -> Self {
        self.room_kinds = Some(kinds.into_iter().map(Into::into).collect());
        self
    }
}

/// An [`Authorizer`] that isolates tenants and applies per-room-kind rules.
///
/// **How a room is bound to a tenant.** A room kind is *tenant-scoped* unless configured as
/// *shared* ([`shared_kind`](TenantPolicy::shared_kind)). A tenant-scoped room's name starts
/// with the tenant id and a dot: `conversation:acme.42` belongs to tenant `acme`. The tenant is
/// the part before the **first** dot, so tenant ids cannot contain a dot (a principal whose
/// tenant has one reaches no tenant-scoped room), and a tenant-scoped room without a dot, or
/// with nothing before or after it, belongs to nobody and nobody reaches it.
///
/// **Decisions**, for `join`, client `publish` (typing included) and `command`:
///
/// 1. The room allow-list ([`ROOM_PERMISSION_PREFIX`]), when the principal has one.
/// 2. Guests: only the room kinds of [`GuestRules::room_kinds`], when set.
/// 3. Tenants: a shared kind admits everyone; a tenant-scoped room admits principals of its own
///    tenant, plus [`PrincipalKind::Service`] principals holding [`CROSS_TENANT_PERMISSION`].
///    Principals without a tenant reach shared kinds only.
/// 4. Guests are read-only unless [`GuestRules::read_only`] is off.
/// 5. The room kind's [`KindRules`] (or the default rules) for the action; commands without a
///    room use the [`command_rules`](TenantPolicy::command_rules).
///
/// Refusals in 1–3 and of a join in 5 are `ROOM_ACCESS_DENIED`; the others are
/// `PERMISSION_DENIED`. Publications made by the application through the hub are not
/// authorized here: the application is trusted to publish into the right room.
///
/// ```
/// use streamgate_auth::{KindRules, Requirement, TenantPolicy};
/// use streamgate_core::{Action, Authorizer, Principal};
/// use streamgate_protocol::ErrorCode;
///
/// let policy = TenantPolicy::new()
///     .shared_kind("lobby")
///     .kind_rules("conversation", KindRules::default().publish(Requirement::role("agent")));
/// let alice = Principal::user("alice").with_tenant("acme");
/// let own = "conversation:acme.42".parse()?;
/// let foreign = "conversation:globex.42".parse()?;
/// let lobby = "lobby:main".parse()?;
/// assert!(policy.authorize(&alice, Action::Join(&own)).is_ok());
/// assert_eq!(policy.authorize(&alice, Action::Join(&foreign)), Err(ErrorCode::RoomAccessDenied));
/// assert_eq!(policy.authorize(&alice, Action::Publish(&own)), Err(ErrorCode::PermissionDenied));
/// assert!(policy.authorize(&Principal::user("bob"), Action::Join(&lobby)).is_ok());
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantPolicy {
    /// Room kinds shared by all tenants.
    pub shared_kinds: BTreeSet<String>,
    /// Rules by room kind.
    pub kinds: BTreeMap<String, KindRules>,
    /// Rules for room kinds without their own entry.
    pub default_rules: KindRules,
    /// What a command without a room requires.
    pub command_rules: Requirement,
    /// Guest restrictions.
    pub guests: GuestRules,
}

/// The tenant a tenant-scoped room belongs to: its name up to the first dot, when both that
/// part and the rest are not empty.
///
/// ```
/// let room = "conversation:acme.42".parse()?;
/// assert_eq!(streamgate_auth::room_tenant(&room), Some("acme"));
/// assert_eq!(streamgate_auth::room_tenant(&"conversation:42".parse()?), None);
/// # Ok::<(), streamgate_protocol::RoomIdError>(())
/// ```
#[must_use]
pub fn room_tenant(room: &RoomId) -> Option<&str> {
    match room.name().split_once('.') {
        Some((tenant, rest)) if !tenant.is_empty() && !rest.is_empty() => Some(tenant),
        _ => None,
    }
}

fn is_guest(principal: &Principal) -> bool {
    principal.kind == PrincipalKind::Guest || principal.is_anonymous()
}

impl TenantPolicy {
    /// A policy with no shared kind, no rules, read-only guests.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `kind` shared by all tenants.
    #[must_use]
    pub fn shared_kind(mut self, kind: impl Into<String>) -> Self {
        self.shared_kinds.insert(kind.into());
        self
    }

    /// Sets the rules of `kind`.
    #[must_use]
    pub fn kind_rules(mut self, kind: impl Into<String>, rules: KindRules) -> Self {
        self.kinds.insert(kind.into(), rules);
        self
    }

    /// Sets the rules of kinds without their own entry.
    #[must_use]
    pub fn default_rules(mut self, rules: KindRules) -> Self {
        self.default_rules = rules;
        self
    }

    /// Sets what a command without a room requires.
    #[must_use]
    pub fn command_rules(mut self, requirement: Requirement) -> Self {
        self.command_rules = requirement;
        self
    }

    /// Sets the guest restrictions.
    #[must_use]
    pub fn guests(mut self, guests: GuestRules) -> Self {
        self.guests = guests;
        self
    }

    fn rules_for(&self, kind: &str) -> &KindRules {
        self.kinds.get(kind).unwrap_or(&self.default_rules)
    }

    /// Whether `principal` may reach `room` at all (steps 1–3).
    #[must_use]
    pub fn may_reach(&self, principal: &Principal, room: &RoomId) -> bool {
        let mut allow_list = principal
            .permissions
            .iter()
            .filter_map(|p| p.strip_prefix(ROOM_PERMISSION_PREFIX))
            .peekable();
        if allow_list.peek().is_some()
            && !allow_list.any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => room.as_str().starts_with(prefix),
                None => pattern == room.as_str(),
            })
        {
            return false;
        }
        if is_guest(principal)
            && self
                .guests
                .room_kinds
                .as_ref()
                .is_some_and(|kinds| !kinds.contains(room.kind()))
        {
            return false;
        }
        if self.shared_kinds.contains(room.kind()) {
            return true;
        }
        let Some(tenant) = room_tenant(room) else {
            return false;
        };
        (principal.kind == PrincipalKind::Service
            && principal
                .permissions
                .iter()
                .any(|p| p == CROSS_TENANT_PERMISSION))
            || principal.tenant.as_deref() == Some(tenant)
    }
}

impl Authorizer for TenantPolicy {
    fn authorize(&self, principal: &Principal, action: Action<'_>) -> Result<(), ErrorCode> {
        let room = match action {
            Action::Join(room) | Action::Publish(room) => Some(room),
            Action::Command { room, .. } => room,
            // `Action` is non-exhaustive: refuse what this policy does not know.
            _ => return Err(ErrorCode::PermissionDenied),
        };
        if let Some(room) = room
            && !self.may_reach(principal, room)
        {
            return Err(ErrorCode::RoomAccessDenied);
        }
        let (requirement, refusal) = match action {
            Action::Join(room) => (
                &self.rules_for(room.kind()).join,
                ErrorCode::RoomAccessDenied,
            ),
            _ if is_guest(principal) && self.guests.read_only => {
                return Err(ErrorCode::PermissionDenied);
            }
            Action::Publish(room) => (
                &self.rules_for(room.kind()).publish,
                ErrorCode::PermissionDenied,
            ),
            _ => (
                room.map_or(&self.command_rules, |r| &self.rules_for(r.kind()).command),
                ErrorCode::PermissionDenied,
            ),
        };
        if requirement.allows(principal) {
            Ok(())
        } else {
            Err(refusal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> RoomId {
        id.parse().unwrap_or_else(|e| panic!("{id}: {e}"))
    }

    fn policy() -> TenantPolicy {
        TenantPolicy::new()
            .shared_kind("lobby")
            .kind_rules(
                "execution",
                KindRules::default()
                    .join(Requirement::role("viewer").or_role("agent"))
                    .command(Requirement::permission("runs:cancel")),
            )
            .guests(GuestRules::default().room_kinds(["lobby", "conversation"]))
    }

    #[test]
    fn the_tenant_is_the_name_up_to_the_first_dot() {
        assert_eq!(room_tenant(&room("c:acme.1.2")), Some("acme"));
        for id in ["c:acme", "c:.1", "c:acme.", "c:1"] {
            assert_eq!(room_tenant(&room(id)), None, "{id}");
        }
    }

    #[test]
    fn tenants_are_isolated() {
        let p = policy();
        let acme = Principal::user("a").with_tenant("acme");
        let dotted = Principal::user("d").with_tenant("ac");
        let none = Principal::user("n");
        let r = room("conversation:acme.1");
        assert_eq!(p.authorize(&acme, Action::Join(&r)), Ok(()));
        assert_eq!(p.authorize(&acme, Action::Publish(&r)), Ok(()));
        for (who, room) in [
            (&dotted, "conversation:acme.1"),
            (&none, "conversation:acme.1"),
            (&acme, "conversation:acme"),
            (&acme, "conversation:globex.1"),
            (
                &Principal::user("x").with_tenant("acme.1"),
                "conversation:acme.1.2",
            ),
        ] {
            let r = room.parse::<RoomId>().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                p.authorize(who, Action::Join(&r)),
                Err(ErrorCode::RoomAccessDenied)
            );
            assert_eq!(
                p.authorize(who, Action::Publish(&r)),
                Err(ErrorCode::RoomAccessDenied)
            );
        }
        assert_eq!(p.authorize(&none, Action::Join(&room("lobby:x"))), Ok(()));
    }

    #[test]
    fn services_cross_tenants_only_with_the_permission() {
        let p = policy();
        let r = room("conversation:globex.1");
        let mut svc = Principal::user("svc")
            .with_tenant("acme")
            .with_kind(PrincipalKind::Service);
        assert_eq!(
            p.authorize(&svc, Action::Join(&r)),
            Err(ErrorCode::RoomAccessDenied)
        );
        svc.permissions.push(CROSS_TENANT_PERMISSION.into());
        assert_eq!(p.authorize(&svc, Action::Join(&r)), Ok(()));
        let mut member = Principal::user("m").with_tenant("acme");
        member.permissions.push(CROSS_TENANT_PERMISSION.into());
        assert_eq!(
            p.authorize(&member, Action::Join(&r)),
            Err(ErrorCode::RoomAccessDenied)
        );
    }

    #[test]
    fn kind_rules_guests_and_allow_lists() {
        let p = policy();
        let run = room("execution:acme.7");
        let plain = Principal::user("a").with_tenant("acme");
        let viewer = plain.clone().with_roles(["viewer"]);
        assert_eq!(
            p.authorize(&plain, Action::Join(&run)),
            Err(ErrorCode::RoomAccessDenied)
        );
        assert_eq!(p.authorize(&viewer, Action::Join(&run)), Ok(()));
        let cancel = Action::Command {
            name: "cancel",
            room: Some(&run),
        };
        assert_eq!(
            p.authorize(&viewer, cancel),
            Err(ErrorCode::PermissionDenied)
        );
        let mut operator = viewer;
        operator.permissions.push("runs:cancel".into());
        assert_eq!(p.authorize(&operator, cancel), Ok(()));

        let guest = Principal::user("g")
            .with_tenant("acme")
            .with_kind(PrincipalKind::Guest);
        let chat = room("conversation:acme.1");
        assert_eq!(p.authorize(&guest, Action::Join(&chat)), Ok(()));
        assert_eq!(
            p.authorize(&guest, Action::Publish(&chat)),
            Err(ErrorCode::PermissionDenied)
        );
        assert_eq!(
            p.authorize(&guest.with_roles(["viewer"]), Action::Join(&run)),
            Err(ErrorCode::RoomAccessDenied)
        );
        assert_eq!(
            p.authorize(&Principal::anonymous(), Action::Join(&room("lobby:1"))),
            Ok(())
        );

        let mut listed = plain;
        listed.permissions = vec!["room:conversation:acme.1".into(), "room:lobby:*".into()];
        assert_eq!(p.authorize(&listed, Action::Join(&chat)), Ok(()));
        assert_eq!(p.authorize(&listed, Action::Join(&room("lobby:z"))), Ok(()));
        assert_eq!(
            p.authorize(&listed, Action::Join(&room("conversation:acme.2"))),
            Err(ErrorCode::RoomAccessDenied)
        );
        listed.permissions = vec!["room:".into()];
        assert_eq!(
            p.authorize(&listed, Action::Join(&chat)),
            Err(ErrorCode::RoomAccessDenied)
        );
    }
}
