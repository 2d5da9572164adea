//! The admin API on the operations listener, against the real binary on the
//! embedded default (in-memory store, development admin token): tenants and
//! keys at run time, rotation with grace, revocation, disabling, and every
//! refusal in the documented shape.

mod common;

use std::time::{Duration, Instant};

use common::*;

struct Admin {
    gw: Proc,
    token: String,
}

impl Admin {
    fn start() -> Admin {
        let gw = Proc::serve(None, &[]);
        let out = gw.output();
        let token = out
            .split_whitespace()
            .find(|w| w.starts_with("lvgadm_"))
            .expect("a development admin token is printed")
            .to_owned();
        Admin { gw, token }
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> Resp {
        let auth = format!("Bearer {}", self.token);
        send(
            &self.gw.ops_url(path),
            method,
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            body.to_owned(),
        )
        .await
    }

    /// A raw JPEG upload on the public listener with `key`: the status and errorCode.
    async fn use_key(&self, key: &str) -> (u16, Option<i64>) {
        let r = post_raw_jpeg(&self.gw.url("/modules/liveness"), key).await;
        let code = if r.status == 200 {
            None
        } else {
            Some(r.error_code())
        };
        (r.status.as_u16(), code)
    }
}

fn refused(r: &Resp, status: u16, code: i64) {
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.json()["requestId"].as_str(),
        r.headers["x-request-id"].to_str().ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_keys_at_run_time() {
    let a = Admin::start();

    // Tenants.
    let r = a
        .call(
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"acme","name":"ACME onboarding","ratePerSecond":5,"burst":10,"monthlyQuota":100000,"images":{"minWidth":200}}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let t = r.json();
    assert_eq!(t["id"], "acme");
    assert_eq!(t["ratePerSecond"], 5.0);
    assert_eq!(t["images"]["minWidth"], 200);
    assert!(t["createdAt"].is_string());
    let r = a
        .call("POST", "/admin/v1/tenants", r#"{"id":"acme"}"#)
        .await;
    refused(&r, 409, 40901);
    let r = a.call("GET", "/admin/v1/tenants", "").await;
    let ids: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["acme", "dev"]);
    let r = a
        .call(
            "PATCH",
            "/admin/v1/tenants/acme",
            r#"{"name":"ACME KYC","burst":20}"#,
        )
        .await;
    assert_eq!(
        (r.json()["name"].as_str(), r.json()["burst"].as_u64()),
        (Some("ACME KYC"), Some(20))
    );
    let r = a.call("GET", "/admin/v1/tenants/nobody", "").await;
    refused(&r, 404, 40402);

    // A key, used on the public listener at once.
    let r = a.call("POST", "/admin/v1/tenants/acme/keys", "").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let issued = r.json();
    let key1 = issued["key"].as_str().unwrap().to_owned();
    let kid1 = issued["keyId"].as_str().unwrap().to_owned();
    assert!(key1.starts_with("lvg_") && key1.contains(&kid1));
    assert_eq!(issued["state"], "active");
    // The tenant's 200 px minimum applies; the drawn image is 320x240.
    assert_eq!(a.use_key(&key1).await, (200, None));

    // Listing never shows a secret or a hash.
    let r = a.call("GET", "/admin/v1/tenants/acme/keys", "").await;
    let listed = String::from_utf8_lossy(&r.body).into_owned();
    assert!(listed.contains(&kid1));
    assert!(!listed.contains(&key1[key1.len() - 20..]), "{listed}");
    assert!(
        !listed.contains("hash") && !listed.contains("\"key\""),
        "{listed}"
    );

    // Rotation: both keys work during the grace period, the old one not after.
    let r = a
        .call(
            "POST",
            &format!("/admin/v1/keys/{kid1}/rotate"),
            r#"{"graceSeconds":2}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let rotated = r.json();
    let key2 = rotated["key"].as_str().unwrap().to_owned();
    let kid2 = rotated["keyId"].as_str().unwrap().to_owned();
    assert_eq!(rotated["rotatedFrom"], kid1.as_str());
    assert!(rotated["previousKeyExpiresAt"].is_string());
    assert_eq!(a.use_key(&key1).await, (200, None));
    assert_eq!(a.use_key(&key2).await, (200, None));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match a.use_key(&key1).await {
            (200, None) => {}
            refusal => {
                assert_eq!(refusal, (401, Some(40104)), "the old key expires");
                break;
            }
        }
        assert!(Instant::now() < deadline, "the old key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.use_key(&key2).await, (200, None));

    // Revocation takes effect on the next request.
    let r = a
        .call("POST", &format!("/admin/v1/keys/{kid2}/revoke"), "")
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["state"].as_str()),
        (200, Some("revoked"))
    );
    assert_eq!(a.use_key(&key2).await, (401, Some(40103)));
    let r = a
        .call(
            "POST",
            &format!("/admin/v1/keys/{kid2}/rotate"),
            r#"{"graceSeconds":0}"#,
        )
        .await;
    refused(&r, 409, 40902);

    // Disabling the tenant refuses its keys; enabling lets them in again.
    let r = a
        .call(
            "POST",
            "/admin/v1/tenants/acme/keys",
            r#"{"expiresAt":"2999-01-01T00:00:00Z"}"#,
        )
        .await;
    let key3 = r.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["expiresAt"], "2999-01-01T00:00:00Z");
    let r = a.call("POST", "/admin/v1/tenants/acme/disable", "").await;
    assert_eq!(r.json()["disabled"], true);
    assert_eq!(a.use_key(&key3).await, (403, Some(40301)));
    a.call("POST", "/admin/v1/tenants/acme/enable", "").await;
    assert_eq!(a.use_key(&key3).await, (200, None));

    // Usage: the month's count of a limited tenant (the development tenant
    // is limited; acme sets a rate).
    let r = a.call("GET", "/admin/v1/tenants/acme/usage", "").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let u = r.json();
    assert_eq!(
        (u["limited"].as_bool(), u["burst"].as_u64()),
        (Some(true), Some(20))
    );
    assert!(u["used"].as_u64().unwrap() >= 8, "{u}");
    assert_eq!(u["limiterMode"], "local");
    let r = a.call("GET", "/admin/v1/tenants/nobody/usage", "").await;
    refused(&r, 404, 40402);

    // Neither an issued key nor the admin token (beyond its banner) is in
    // anything the process printed.
    let mut gw = a.gw;
    gw.terminate();
    let out = gw.output();
    for k in [&key1, &key2, &key3] {
        assert!(!out.contains(k.as_str()), "an issued key was printed");
    }
    assert_eq!(out.matches(a.token.as_str()).count(), 1);
    assert!(out.contains("admin action"), "admin actions are audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_requests_are_refused_in_the_documented_shape() {
    let a = Admin::start();
    a.call("POST", "/admin/v1/tenants", r#"{"id":"acme"}"#)
        .await;
    let cases: Vec<(&str, &str, &str, u16, i64)> = vec![
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"Bad Id"}"#,
            400,
            40008,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"x","ratePerSecond":0}"#,
            400,
            40008,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"x","ratePerSecond":-1}"#,
            400,
            40008,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"x","burst":0}"#,
            400,
            40008,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"x","monthlyQuota":0}"#,
            400,
            40008,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"x","ratePerSecond":1e12}"#,
            400,
            40008,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"x","images":{"formats":[]}}"#,
            400,
            40008,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"x","images":{"minWidth":9000}}"#,
            400,
            40008,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"x","images":{"formats":["bmp"]}}"#,
            400,
            40007,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"id":"x","colour":"red"}"#,
            400,
            40007,
        ),
        (
            "POST",
            "/admin/v1/tenants",
            r#"{"name":"no id"}"#,
            400,
            40007,
        ),
        ("POST", "/admin/v1/tenants", "not json", 400, 40007),
        (
            "PATCH",
            "/admin/v1/tenants/acme",
            r#"{"burst":-3}"#,
            400,
            40007,
        ),
        (
            "PATCH",
            "/admin/v1/tenants/nobody",
            r#"{"burst":3}"#,
            404,
            40402,
        ),
        ("POST", "/admin/v1/tenants/nobody/keys", "", 404, 40402),
        (
            "POST",
            "/admin/v1/tenants/acme/keys",
            r#"{"expiresAt":"2020-01-01T00:00:00Z"}"#,
            400,
            40008,
        ),
        (
            "POST",
            "/admin/v1/tenants/acme/keys",
            r#"{"expiresAt":"tomorrow"}"#,
            400,
            40007,
        ),
        ("GET", "/admin/v1/tenants/nobody/keys", "", 404, 40402),
        ("POST", "/admin/v1/keys/abcdefabcdef/revoke", "", 404, 40403),
        (
            "POST",
            "/admin/v1/keys/not-a-kid/rotate",
            r#"{"graceSeconds":1}"#,
            404,
            40403,
        ),
        ("POST", "/admin/v1/tenants/nobody/disable", "", 404, 40402),
    ];
    for (method, path, body, status, code) in cases {
        let r = a.call(method, path, body).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (status, code),
            "{method} {path} {body}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // A grace period out of range.
    let r = a.call("POST", "/admin/v1/tenants/acme/keys", "").await;
    let kid = r.json()["keyId"].as_str().unwrap().to_owned();
    let r = a
        .call(
            "POST",
            &format!("/admin/v1/keys/{kid}/rotate"),
            r#"{"graceSeconds":99999999}"#,
        )
        .await;
    refused(&r, 400, 40008);

    // The admin token: missing, wrong, or another scheme.
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("Basic YWRtaW46YWRtaW4="),
    ] {
        let mut h = vec![];
        if let Some(v) = auth {
            h.push(("authorization", v));
        }
        let r = send(&a.gw.ops_url("/admin/v1/tenants"), "GET", &h, Vec::new()).await;
        refused(&r, 401, 40106);
    }
    // Never on the public listener.
    let auth = format!("Bearer {}", a.token);
    let r = send(
        &a.gw.url("/admin/v1/tenants"),
        "GET",
        &[("authorization", auth.as_str())],
        Vec::new(),
    )
    .await;
    refused(&r, 404, 40401);
}
