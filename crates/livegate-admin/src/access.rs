//! Who may call which admin route: bearer tokens with scopes, checked by one
//! route layer ([`gate`]) in front of every admin handler.
//!
//! A token is held only as its SHA-256 digest; a presented token is hashed
//! and compared with every configured digest in constant time (so neither
//! its length nor which token it resembles leaks through timing). Scopes:
//! - `read`: every `GET` route (tenants, keys, usage, audit lookup, the
//!   OpenAPI document);
//! - `keys`: issue, rotate and revoke keys — of every tenant, or only of
//!   the token's `tenants` when it lists some;
//! - `admin`: everything.
//!
//! A missing or unknown token is 401 40106; a known token without the
//! route's scope (or acting on a tenant outside its list) is 403 40302.
//! Which scope a route needs is the [`ROUTES`](crate::ROUTES) table's, looked
//! up by the matched route and method; a method the table does not list for
//! the path goes on to routing's 405 (the router has exactly the table's
//! routes, which a test checks method by method).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, header};
use livegate_core::{ErrorKind, Secret, request_id};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::{AdminApi, ROUTES, Refusal, find_key_tenant};

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every `GET` route: tenants, keys, usage, audit lookup, the document.
    Read,
    /// Issue, rotate and revoke keys (of the token's tenants, if it lists any).
    Keys,
    /// Everything.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Keys => "keys",
            Scope::Admin => "admin",
        }
    }
}

/// A bearer token, held only as its SHA-256 digest.
#[derive(Clone)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &Secret) -> Self {
        Self(Sha256::digest(token.expose().as_bytes()).into())
    }

    /// Whether `headers` carry this token as `Authorization: Bearer`.
    pub fn presented_in(&self, headers: &HeaderMap) -> bool {
        bool::from(self.ct_eq_presented(&presented(headers)))
    }

    fn ct_eq_presented(&self, p: &Presented) -> Choice {
        p.digest.ct_eq(&self.0) & Choice::from(u8::from(!p.empty))
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest([redacted])")
    }
}

/// The digest of the token an `Authorization: Bearer` header carries.
struct Presented {
    digest: [u8; 32],
    empty: bool,
}

fn presented(headers: &HeaderMap) -> Presented {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or("");
    Presented {
        digest: Sha256::digest(token.as_bytes()).into(),
        empty: token.is_empty(),
    }
}

/// One admin token: its name (for logs), digest, scopes and tenant list.
#[derive(Debug, Clone)]
pub struct AdminToken {
    name: String,
    digest: TokenDigest,
    scopes: BTreeSet<Scope>,
    /// Limits the `keys` scope to these tenants; `None`: every tenant.
    tenants: Option<BTreeSet<String>>,
}

impl AdminToken {
    /// A token with `scopes`; `tenants`, when given, limits its `keys` scope.
    pub fn new(
        name: impl Into<String>,
        token: &Secret,
        scopes: impl IntoIterator<Item = Scope>,
        tenants: Option<Vec<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            digest: TokenDigest::of(token),
            scopes: scopes.into_iter().collect(),
            tenants: tenants.map(|t| t.into_iter().collect()),
        }
    }

    /// The name an action is logged under.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// Whether the `keys` scope reaches `tenant`.
    fn reaches(&self, tenant: &str) -> bool {
        self.scopes.contains(&Scope::Admin)
            || self.tenants.as_ref().is_none_or(|t| t.contains(tenant))
    }

    fn limited(&self) -> bool {
        !self.scopes.contains(&Scope::Admin) && self.tenants.is_some()
    }
}

/// Every configured token.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<Arc<AdminToken>>);

impl Tokens {
    pub fn push(&mut self, token: AdminToken) {
        self.0.push(Arc::new(token));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The token `headers` present: compared with every token, each in
    /// constant time, whatever matches.
    fn find(&self, headers: &HeaderMap) -> Option<Arc<AdminToken>> {
        let p = presented(headers);
        let mut found = None;
        for t in &self.0 {
            if bool::from(t.digest.ct_eq_presented(&p)) && found.is_none() {
                found = Some(t.clone());
            }
        }
        found
    }
}

/// The route layer in front of every admin handler: the token, then its
/// scope for the matched route (and tenant), then the path's parameters;
/// finally renders a handler's [`Refusal`] with the request id.
pub(crate) async fn gate(State(api): State<Arc<AdminApi>>, req: Request, next: Next) -> Response {
    let rid = request_id(req.headers()).to_owned();
    match admit(&api, req).await {
        Ok(req) => {
            let mut res = next.run(req).await;
            match res.extensions_mut().remove::<Refusal>() {
                Some(refusal) => refusal.render(&rid),
                None => res,
            }
        }
        Err(refusal) => refusal.render(&rid),
    }
}

async fn admit(api: &AdminApi, req: Request) -> Result<Request, Refusal> {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| ROUTES.iter().find(|r| r.is(req.method(), p.as_str())));
    // A path the router matched with a method it does not have: routing's
    // 405 answers (a test holds the router to ROUTES, so no handler is
    // reached this way).
    let Some(route) = route else {
        return Ok(req);
    };
    let token = api
        .tokens
        .find(req.headers())
        .ok_or(Refusal(ErrorKind::AdminTokenInvalid))?;
    let need = route.scope;
    if !token.has(need) {
        return Err(Refusal(ErrorKind::AdminScopeMissing));
    }
    let (mut parts, body) = req.into_parts();
    // A parameter that is not UTF-8 once decoded names nothing that exists.
    let params = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map_err(|_| Refusal(not_found(route.path)))?;
    if need == Scope::Keys && token.limited() {
        let mut tenant = None;
        for (name, value) in &params {
            match name {
                "id" => tenant = Some(value.to_owned()),
                "keyId" => tenant = find_key_tenant(api.store.as_ref(), value).await?,
                _ => {}
            }
        }
        // A key that does not exist is the handler's 404.
        if tenant.is_some_and(|t| !token.reaches(&t)) {
            return Err(Refusal(ErrorKind::AdminScopeMissing));
        }
    }
    parts.extensions.insert(Caller(token));
    Ok(Request::from_parts(parts, body))
}

/// The route's "no such …" for a path parameter that cannot exist.
fn not_found(path: &str) -> ErrorKind {
    if path.contains("{keyId}") {
        ErrorKind::KeyNotFound
    } else if path.contains("{transactionId}") {
        ErrorKind::AuditRecordNotFound
    } else {
        ErrorKind::TenantNotFound
    }
}

/// The admitted token, for the admin audit event.
#[derive(Clone)]
pub(crate) struct Caller(pub Arc<AdminToken>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        // Always there behind the gate; refuse rather than act unnamed.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(Refusal(ErrorKind::AdminTokenInvalid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn tokens_are_found_by_their_digest_only() {
        let mut tokens = Tokens::default();
        tokens.push(AdminToken::new(
            "ops",
            &Secret::new("ops-token-0123456789"),
            [Scope::Admin],
            None,
        ));
        tokens.push(AdminToken::new(
            "dash",
            &Secret::new("dash-token-0123456789"),
            [Scope::Read],
            None,
        ));
        let found = |auth: &str| tokens.find(&headers(auth)).map(|t| t.name.clone());
        assert_eq!(
            found("Bearer dash-token-0123456789").as_deref(),
            Some("dash")
        );
        assert_eq!(found("bearer ops-token-0123456789").as_deref(), Some("ops"));
        assert_eq!(found("Bearer ops-token-012345678"), None);
        assert_eq!(found("Basic ops-token-0123456789"), None);
        assert_eq!(found("Bearer "), None);
        // An empty token matches nothing, even a configured empty one.
        let mut empty = Tokens::default();
        empty.push(AdminToken::new("e", &Secret::new(""), [Scope::Admin], None));
        assert!(empty.find(&headers("Bearer  ")).is_none());
        assert!(empty.find(&HeaderMap::new()).is_none());
        assert!(!format!("{tokens:?}").contains("0123456789"));
    }

    #[test]
    fn scopes_and_tenants() {
        let keys = AdminToken::new(
            "k",
            &Secret::new("k"),
            [Scope::Keys],
            Some(vec!["acme".into()]),
        );
        assert!(keys.has(Scope::Keys) && !keys.has(Scope::Read) && !keys.has(Scope::Admin));
        assert!(keys.limited() && keys.reaches("acme") && !keys.reaches("other"));
        let admin = AdminToken::new(
            "a",
            &Secret::new("a"),
            [Scope::Admin],
            Some(vec!["acme".into()]),
        );
        assert!(admin.has(Scope::Read) && admin.has(Scope::Keys));
        assert!(!admin.limited() && admin.reaches("other"));
    }
}
