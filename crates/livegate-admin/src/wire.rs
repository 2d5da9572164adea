//! The admin API's JSON: one camelCase wire type per domain type, each used
//! both ways where the API both takes and gives it.
//!
//! The domain types keep their own (snake_case) serde form, which is what
//! the configuration file and the shared store hold, and which replicas of
//! other versions read during a rolling update: so the admin API's camelCase
//! is a type of its own rather than a second spelling on the domain type.

use std::fmt;
use std::marker::PhantomData;

use livegate_auth::{KeyRecord, Tenant, TenantUpdate};
use livegate_core::Timestamp;
use livegate_payload::{FormatSet, ImageOverrides};
use livegate_protect::{ProtectionOverrides, ReplayMode, ReplayScope};
use livegate_ratelimit::Usage;
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// [`ImageOverrides`] on the wire.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Images {
    #[serde(skip_serializing_if = "Option::is_none")]
    formats: Option<FormatSet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_height: Option<u32>,
}

impl From<Images> for ImageOverrides {
    fn from(v: Images) -> Self {
        let Images {
            formats,
            min_width,
            min_height,
            max_width,
            max_height,
        } = v;
        ImageOverrides {
            formats,
            min_width,
            min_height,
            max_width,
            max_height,
        }
    }
}

impl From<ImageOverrides> for Images {
    fn from(o: ImageOverrides) -> Self {
        let ImageOverrides {
            formats,
            min_width,
            min_height,
            max_width,
            max_height,
        } = o;
        Images {
            formats,
            min_width,
            min_height,
            max_width,
            max_height,
        }
    }
}

/// [`ProtectionOverrides`] on the wire.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Protection {
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<ReplayMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_window_hours: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_scope: Option<ReplayScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_max_distance: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strip_metadata: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score_threshold: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review_band: Option<u8>,
}

impl From<Protection> for ProtectionOverrides {
    fn from(v: Protection) -> Self {
        let Protection {
            replay,
            replay_window_hours,
            replay_scope,
            replay_max_distance,
            strip_metadata,
            score_threshold,
            review_band,
        } = v;
        ProtectionOverrides {
            replay,
            replay_window_hours,
            replay_scope,
            replay_max_distance,
            strip_metadata,
            score_threshold,
            review_band,
        }
    }
}

impl From<ProtectionOverrides> for Protection {
    fn from(o: ProtectionOverrides) -> Self {
        let ProtectionOverrides {
            replay,
            replay_window_hours,
            replay_scope,
            replay_max_distance,
            strip_metadata,
            score_threshold,
            review_band,
        } = o;
        Protection {
            replay,
            replay_window_hours,
            replay_scope,
            replay_max_distance,
            strip_metadata,
            score_threshold,
            review_band,
        }
    }
}

/// [`TenantUpdate`] on the wire: the body of `PATCH /admin/v1/tenants/{id}`,
/// with `id` the body of `POST /admin/v1/tenants` ([`WithId`]), and the
/// settings part of every tenant in an answer ([`TenantOut`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TenantFields {
    pub(crate) name: Option<String>,
    pub(crate) rate_per_second: Option<f64>,
    pub(crate) burst: Option<u32>,
    pub(crate) monthly_quota: Option<u64>,
    pub(crate) images: Option<Images>,
    pub(crate) protection: Option<Protection>,
}

impl From<TenantFields> for TenantUpdate {
    fn from(f: TenantFields) -> Self {
        TenantUpdate {
            name: f.name,
            rate_per_second: f.rate_per_second,
            burst: f.burst,
            monthly_quota: f.monthly_quota,
            images: f.images.map(Into::into),
            protection: f.protection.map(Into::into),
        }
    }
}

/// [`Tenant`] on the wire (answers only).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TenantOut {
    id: String,
    #[serde(flatten)]
    fields: TenantFields,
    disabled: bool,
    created_at: Option<Timestamp>,
    updated_at: Option<Timestamp>,
}

impl From<Tenant> for TenantOut {
    fn from(t: Tenant) -> Self {
        let s = t.settings;
        TenantOut {
            id: t.id,
            fields: TenantFields {
                name: t.name,
                rate_per_second: s.rate_per_second,
                burst: s.burst,
                monthly_quota: s.monthly_quota,
                images: Some(s.images.into()),
                protection: Some(s.protection.into()),
            },
            disabled: t.disabled,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// [`KeyRecord`] on the wire (answers only): never the hash.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyOut {
    key_id: String,
    tenant_id: String,
    /// `active`, `expired` or `revoked`.
    state: &'static str,
    created_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    rotated_from: Option<String>,
    /// When the key last authenticated a request, to within about a minute;
    /// `null` when never (or not since this field existed).
    last_used_at: Option<Timestamp>,
}

impl KeyOut {
    pub(crate) fn of(k: &KeyRecord, now: Timestamp) -> Self {
        let state = if k.revoked {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        KeyOut {
            key_id: k.kid.to_string(),
            tenant_id: k.tenant_id.clone(),
            state,
            created_at: k.created_at,
            expires_at: k.expires_at,
            rotated_from: k.rotated_from.as_ref().map(ToString::to_string),
            last_used_at: k.last_used_at,
        }
    }
}

/// A newly issued key: the only answer that ever holds a plaintext key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IssuedKey {
    #[serde(flatten)]
    pub(crate) key: KeyOut,
    #[serde(rename = "key")]
    pub(crate) plaintext: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) previous_key_expires_at: Option<Timestamp>,
}

/// The body of `POST /admin/v1/tenants/{id}/keys`.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NewKey {
    pub(crate) expires_at: Option<Timestamp>,
    /// The client's id of this issuance: a retry with the same one never
    /// makes a second key (409 40905 naming the first).
    pub(crate) request_id: Option<String>,
}

/// The body of `POST /admin/v1/keys/{keyId}/rotate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Rotate {
    pub(crate) grace_seconds: u64,
}

/// A tenant's usage (answers only): its limit and the limiter's count.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageOut {
    pub(crate) tenant_id: String,
    /// Whether a rate or a quota applies to the tenant at all.
    pub(crate) limited: bool,
    pub(crate) rate_per_second: Option<f64>,
    pub(crate) burst: Option<u32>,
    #[serde(flatten)]
    pub(crate) usage: Option<Usage>,
    /// The limiter's mode in force: `redis`, `local`, `open` or `closed`.
    pub(crate) limiter_mode: &'static str,
}

/// `T` with an `id` next to its own fields in one JSON object: the body of
/// `POST /admin/v1/tenants` is `{"id", ...TenantFields}`. As strict as a
/// derived struct: a repeated field, an unknown one (by `T`) or a missing
/// `id` is an error.
pub(crate) struct WithId<T> {
    pub(crate) id: String,
    pub(crate) rest: T,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for WithId<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);

        impl<'de, T: DeserializeOwned> Visitor<'de> for Fields<T> {
            type Value = WithId<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with an id")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut id = None;
                let mut rest = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "id" {
                        if id.is_some() {
                            return Err(de::Error::duplicate_field("id"));
                        }
                        id = Some(map.next_value::<String>()?);
                    } else {
                        let value = map.next_value::<serde_json::Value>()?;
                        if rest.insert(key, value).is_some() {
                            return Err(de::Error::custom("duplicate field"));
                        }
                    }
                }
                let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
                let rest =
                    T::deserialize(serde_json::Value::Object(rest)).map_err(de::Error::custom)?;
                Ok(WithId { id, rest })
            }
        }

        d.deserialize_map(Fields(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_tenant(json: &str) -> Result<WithId<TenantFields>, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn a_new_tenant_is_an_id_and_the_patch_fields() {
        let t = new_tenant(r#"{"id":"acme","burst":5,"images":{"minWidth":320}}"#).unwrap();
        assert_eq!(t.id, "acme");
        assert_eq!(t.rest.burst, Some(5));
        let update = TenantUpdate::from(t.rest);
        assert_eq!(update.images.unwrap().min_width, Some(320));
        for bad in [
            r#"{"name":"no id"}"#,
            r#"{"id":7}"#,
            r#"{"id":"a","id":"b"}"#,
            r#"{"id":"a","burst":1,"burst":2}"#,
            r#"{"id":"a","colour":"red"}"#,
            r#"{"id":"a","images":{"min_width":320}}"#,
            r#"{"id":"a","burst":-1}"#,
            r#"["id"]"#,
        ] {
            assert!(new_tenant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tenant_answer_is_camel_case_and_complete() {
        let mut t = Tenant::new("acme");
        t.settings.images.min_width = Some(320);
        let v = serde_json::to_value(TenantOut::from(t)).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "burst",
                "createdAt",
                "disabled",
                "id",
                "images",
                "monthlyQuota",
                "name",
                "protection",
                "ratePerSecond",
                "updatedAt"
            ]
        );
        assert_eq!(v["images"], serde_json::json!({"minWidth": 320}));
        assert_eq!(v["protection"], serde_json::json!({}));
        assert!(v["name"].is_null() && v["ratePerSecond"].is_null());
    }
}
