//! The admin pages' pure side: role names, TTL fields, the audit log's filters and paging.
//! Tested on the host.

use exile_api::v1 as pb;

/// Lower-case name of a role as the master spells it ("viewer").
pub fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Viewer) => "viewer",
        Ok(pb::Role::Operator) => "operator",
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::Allocator) => "allocator",
        _ => "none",
    }
}

/// The role a select's value names.
pub fn parse_role(s: &str) -> Option<pb::Role> {
    match s {
        "viewer" => Some(pb::Role::Viewer),
        "operator" => Some(pb::Role::Operator),
        "admin" => Some(pb::Role::Admin),
        "allocator" => Some(pb::Role::Allocator),
        _ => None,
    }
}

/// True when `role` (as WhoAmI reports it) is admin.
pub fn is_admin(role: Option<i32>) -> bool {
    role == Some(pb::Role::Admin as i32)
}

/// True when `role` may change fleets and instances (operator or admin).
pub fn can_operate(role: Option<i32>) -> bool {
    matches!(
        role.and_then(|r| pb::Role::try_from(r).ok()),
        Some(pb::Role::Operator | pb::Role::Admin)
    )
}

/// A TTL as typed ("1h", "90d", "3600"), in seconds; blank is 0 (the master's default).
pub fn parse_ttl(raw: &str) -> Result<u64, String> {
    if raw.trim().is_empty() {
        return Ok(0);
    }
    let d = exile_api::format::parse_duration(raw).map_err(|m| format!("TTL: {m}"))?;
    if d.as_secs() == 0 {
        return Err("TTL: at least one second".into());
    }
    Ok(d.as_secs())
}

/// The audit filters as typed; times already turned into Unix milliseconds by the page
/// (the browser knows the local time zone), `None` when blank.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditFilters {
    /// Text the actor contains.
    pub actor: String,
    /// Text the action contains.
    pub action: String,
    /// Text the target contains.
    pub target: String,
    /// "", "ok" or "failed".
    pub outcome: String,
    /// From, Unix ms.
    pub from_ms: Option<i64>,
    /// Until, Unix ms.
    pub to_ms: Option<i64>,
}

/// Entries per audit page.
pub const AUDIT_PAGE: u32 = 50;

impl AuditFilters {
    /// The request for the page that starts below `before_id` (0: the newest).
    pub fn request(&self, before_id: i64) -> Result<pb::ListAuditLogRequest, String> {
        if let (Some(a), Some(b)) = (self.from_ms, self.to_ms)
            && a >= b
        {
            return Err("the time range ends before it starts".into());
        }
        Ok(pb::ListAuditLogRequest {
            limit: AUDIT_PAGE,
            before_id,
            actor: self.actor.trim().to_owned(),
            action: self.action.trim().to_owned(),
            target: self.target.trim().to_owned(),
            outcome: self.outcome.clone(),
            from_unix_ms: self.from_ms.unwrap_or(0),
            to_unix_ms: self.to_ms.unwrap_or(0),
        })
    }
}

/// Where the audit page is: the `before_id` of each page seen so far (the first is 0).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditPager {
    starts: Vec<i64>,
}

impl Default for AuditPager {
    fn default() -> Self {
        AuditPager { starts: vec![0] }
    }
}

impl AuditPager {
    /// `before_id` of the page shown.
    pub fn current(&self) -> i64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// 1-based page number.
    pub fn page(&self) -> usize {
        self.starts.len()
    }

    /// Whether an older page may exist after `entries` (a full page).
    pub fn has_older(entries: &[pb::AuditEntry]) -> bool {
        entries.len() >= AUDIT_PAGE as usize
    }

    /// Moves to the page after `entries`.
    pub fn older(&mut self, entries: &[pb::AuditEntry]) {
        if let Some(last) = entries.last() {
            self.starts.push(last.id);
        }
    }

    /// Moves back one page; false on the first.
    pub fn newer(&mut self) -> bool {
        if self.starts.len() > 1 {
            self.starts.pop();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        for r in [pb::Role::Viewer, pb::Role::Operator, pb::Role::Admin] {
            assert_eq!(parse_role(role_name(r as i32)), Some(r));
        }
        assert!(is_admin(Some(pb::Role::Admin as i32)));
        assert!(!is_admin(Some(pb::Role::Operator as i32)));
        assert!(!is_admin(None));
        assert!(can_operate(Some(pb::Role::Operator as i32)));
        assert!(!can_operate(Some(pb::Role::Viewer as i32)));
        assert!(!can_operate(Some(pb::Role::Allocator as i32)));
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl(""), Ok(0));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("90d"), Ok(90 * 86_400));
        assert!(parse_ttl("soon").unwrap_err().starts_with("TTL:"));
        assert!(parse_ttl("0").is_err());
    }

    #[test]
    fn audit_filters_and_paging() {
        let f = AuditFilters {
            actor: " alice ".into(),
            outcome: "failed".into(),
            from_ms: Some(10),
            ..Default::default()
        };
        let r = f.request(0).unwrap();
        assert_eq!((r.actor.as_str(), r.outcome.as_str()), ("alice", "failed"));
        assert_eq!((r.from_unix_ms, r.to_unix_ms, r.limit), (10, 0, AUDIT_PAGE));
        assert!(
            AuditFilters {
                from_ms: Some(5),
                to_ms: Some(5),
                ..Default::default()
            }
            .request(0)
            .is_err()
        );

        let entry = |id| pb::AuditEntry {
            id,
            ..Default::default()
        };
        let full: Vec<_> = (0..AUDIT_PAGE as i64).map(|i| entry(500 - i)).collect();
        let mut p = AuditPager::default();
        assert_eq!((p.current(), p.page()), (0, 1));
        assert!(AuditPager::has_older(&full));
        p.older(&full);
        assert_eq!((p.current(), p.page()), (451, 2));
        assert!(!AuditPager::has_older(&full[..3]));
        assert!(p.newer());
        assert_eq!(p.current(), 0);
        assert!(!p.newer());
    }
}
