//! Redis key names; see the table in the module docs.

#[derive(Debug, Clone)]
pub(super) struct Layout {
    prefix: String,
}

impl Layout {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(super) fn tenant(&self, tenant: &str) -> String {
        format!("{}:{{t:{tenant}}}:tenant", self.prefix)
    }

    pub(super) fn key(&self, tenant: &str, kid: &str) -> String {
        format!("{}:{{t:{tenant}}}:key:{kid}", self.prefix)
    }

    pub(super) fn tenant_keys(&self, tenant: &str) -> String {
        format!("{}:{{t:{tenant}}}:keys", self.prefix)
    }

    /// A key issuance's request id (the client's, hashed: any text it
    /// sends stays out of key names) → the key id it produced.
    pub(super) fn issue_request(&self, tenant: &str, request_id: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(request_id.as_bytes());
        let hex = livegate_core::hex::encode(&digest);
        format!("{}:{{t:{tenant}}}:issue:{hex}", self.prefix)
    }

    pub(super) fn kid_index(&self, kid: &str) -> String {
        format!("{}:kid:{kid}", self.prefix)
    }

    pub(super) fn tenants(&self) -> String {
        format!("{}:tenants", self.prefix)
    }

    pub(super) fn channel(&self) -> String {
        format!("{}:invalidate", self.prefix)
    }
}

/// Invalidation message for a key.
pub(super) fn kid_changed(kid: &str) -> String {
    format!("k:{kid}")
}

/// Invalidation message for a tenant (and so every key of it).
pub(super) fn tenant_changed(tenant: &str) -> String {
    format!("t:{tenant}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_records_share_a_hash_tag() {
        let l = Layout::new("livegate");
        assert_eq!(l.tenant("acme"), "livegate:{t:acme}:tenant");
        assert_eq!(
            l.key("acme", "aaaaaaaaaaaa"),
            "livegate:{t:acme}:key:aaaaaaaaaaaa"
        );
        assert_eq!(l.tenant_keys("acme"), "livegate:{t:acme}:keys");
        assert_eq!(l.kid_index("aaaaaaaaaaaa"), "livegate:kid:aaaaaaaaaaaa");
        assert_eq!(l.channel(), "livegate:invalidate");
    }
}
