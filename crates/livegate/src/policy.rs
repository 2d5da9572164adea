//! The tenant's policy, resolved once, right after authentication.
//!
//! [`Policies::resolve`] applies the tenant's settings to the deployment's
//! defaults — its rate and quota, its image policy, its protection — into
//! one [`TenantPolicy`] extension on the request. Every later layer reads
//! its part of that one value through its own crate's trait
//! ([`RatePolicy`], [`ImagePolicySource`], [`ProtectionSource`], and
//! [`Tenanted`] for the id); none works a policy out again.

use std::sync::Arc;

use http::Request;
use livegate_auth::{Principal, Tenant};
use livegate_core::Tenanted;
use livegate_payload::{ImagePolicy, ImagePolicySource};
use livegate_protect::{ProtectionPolicy, ProtectionSource, ReplayMode};
use livegate_ratelimit::{Limit, RatePolicy, limit_of};

/// One request's tenant and everything decided for it.
#[derive(Clone, Debug)]
pub struct TenantPolicy {
    tenant: Arc<str>,
    /// `None`: the tenant is not rate-limited.
    limit: Option<Limit>,
    images: ImagePolicy,
    protection: ProtectionPolicy,
}

impl Tenanted for TenantPolicy {
    fn tenant_id(&self) -> &Arc<str> {
        &self.tenant
    }
}

impl RatePolicy for TenantPolicy {
    fn limit(&self) -> Option<Limit> {
        self.limit
    }
}

impl ImagePolicySource for TenantPolicy {
    fn image_policy(&self) -> &ImagePolicy {
        &self.images
    }

    /// Protection works on the decoded image when it fingerprints it or
    /// removes its metadata.
    fn keep_image(&self) -> bool {
        self.protection.replay != ReplayMode::Off || self.protection.strip_metadata
    }
}

impl ProtectionSource for TenantPolicy {
    fn protection(&self) -> &ProtectionPolicy {
        &self.protection
    }
}

/// The deployment's defaults, which a tenant's settings change.
#[derive(Clone, Copy, Debug)]
pub struct Policies {
    /// `[images]`.
    pub images: ImagePolicy,
    /// `[protection]`.
    pub protection: ProtectionPolicy,
    /// The rate and burst of a tenant that sets none; `None`: such tenants
    /// are not rate-limited.
    pub default_limit: Option<Limit>,
}

impl Policies {
    /// The policy of tenant `t`.
    pub fn resolve(&self, t: &Tenant) -> TenantPolicy {
        let s = &t.settings;
        TenantPolicy {
            tenant: Arc::from(t.id.as_str()),
            limit: limit_of(
                s.rate_per_second,
                s.burst,
                s.monthly_quota,
                self.default_limit,
            ),
            images: self.images.with(&s.images),
            protection: self.protection.with(&s.protection),
        }
    }

    /// Puts the policy of the request's authenticated tenant in its
    /// extensions (a request without a principal is left as it is: the
    /// auth layer refused it already).
    pub fn attach<B>(&self, mut req: Request<B>) -> Request<B> {
        if let Some(p) = req.extensions().get::<Principal>() {
            let policy = self.resolve(&p.tenant);
            req.extensions_mut().insert(policy);
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use livegate_auth::Tenant;
    use livegate_payload::ImageOverrides;
    use livegate_protect::ProtectionOverrides;

    use super::*;

    fn policies() -> Policies {
        Policies {
            images: ImagePolicy::ANY,
            protection: ProtectionPolicy::default(),
            default_limit: Some(Limit {
                rate_per_second: 5.0,
                burst: 10,
                monthly_quota: None,
            }),
        }
    }

    #[test]
    fn a_tenant_without_settings_gets_the_deployments_defaults() {
        let p = policies().resolve(&Tenant::new("acme"));
        assert_eq!(&**p.tenant_id(), "acme");
        let limit = p.limit().expect("the default rate applies");
        assert_eq!((limit.rate_per_second, limit.burst), (5.0, 10));
        assert_eq!(limit.monthly_quota, None);
        assert_eq!(*p.image_policy(), ImagePolicy::ANY);
        let d = ProtectionPolicy::default();
        assert_eq!(*p.protection(), d);
        assert_eq!(
            p.keep_image(),
            d.replay != ReplayMode::Off || d.strip_metadata
        );
    }

    #[test]
    fn the_tenants_settings_change_the_defaults_they_name() {
        let mut t = Tenant::new("globex");
        t.settings.rate_per_second = Some(2.0);
        t.settings.monthly_quota = Some(1000);
        t.settings.images = ImageOverrides {
            max_width: Some(640),
            ..ImageOverrides::default()
        };
        t.settings.protection = ProtectionOverrides {
            replay: Some(ReplayMode::Off),
            strip_metadata: Some(false),
            ..ProtectionOverrides::default()
        };
        let p = policies().resolve(&t);
        let limit = p.limit().expect("limited");
        // Its own rate, the default burst, its own quota.
        assert_eq!((limit.rate_per_second, limit.burst), (2.0, 10));
        assert_eq!(limit.monthly_quota, Some(1000));
        assert_eq!(p.image_policy().max_width, 640);
        assert_eq!(p.image_policy().min_width, ImagePolicy::ANY.min_width);
        assert_eq!(p.protection().replay, ReplayMode::Off);
        assert!(!p.keep_image(), "nothing works on the pixels");
    }

    #[test]
    fn without_a_default_rate_a_tenant_without_one_is_not_limited() {
        let policies = Policies {
            default_limit: None,
            ..policies()
        };
        assert!(policies.resolve(&Tenant::new("acme")).limit().is_none());
    }
}
