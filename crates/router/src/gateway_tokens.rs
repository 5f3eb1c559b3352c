//! Gateway access tokens, like the vendor's: user tokens act as a ClearML user, endpoint tokens
//! grant chosen endpoints (a /service route id or a static route name) to whoever holds them.
//! Each has a label and an expiry and can be revoked. The proxy checks them without ClearML:
//! `cgw1.<payload>.<signature>` (base64url JSON claims, HMAC-SHA256 with the router's key).
//!
//! The registry (`ROUTER_GATEWAY_TOKENS_FILE`, JSON) keeps a SHA-256 of each token, never the
//! token; the key lives beside it (`<file>.key`, 0600). The router publishes the key (0600) and
//! the revoked ids into the Lua dir, which the proxy re-reads within a second: no reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apply::files::{read_if_exists, write_atomic, write_atomic_mode};
pub use gateway_core::gateway_token::{Kind, MintRequest};

/// Names of the files the Lua module reads (clearml_gateway_tokens.lua).
pub const LUA_KEY_FILE: &str = "clearml_gateway.key";
pub const LUA_STATE_FILE: &str = "clearml_gateway_tokens.json";
const PREFIX: &str = "cgw1.";

/// One minted token as the registry keeps it (no token, its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub kind: Kind,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    pub created_at: u64,
    pub expires_at: u64,
    pub sha256: String,
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Serialize)]
struct Claims<'a> {
    id: &'a str,
    kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    endpoints: &'a [String],
    exp: u64,
}

/// The token for `claims` signed with `key`.
fn sign(key: &[u8], claims: &Claims<'_>) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(PREFIX.as_bytes());
    mac.update(payload.as_bytes());
    format!("{PREFIX}{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn hex_sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The registry and key, and where the proxy reads them.
pub struct TokenStore {
    registry: PathBuf,
    lua_dir: PathBuf,
    key: Vec<u8>,
    /// One change at a time (read-modify-write of the registry).
    lock: tokio::sync::Mutex<()>,
}

impl TokenStore {
    /// Opens the registry (created empty if missing), creates the key on first use, and
    /// publishes both for the proxy.
    pub fn open(registry: PathBuf, lua_dir: PathBuf) -> anyhow::Result<Arc<Self>> {
        let key_path = key_path(&registry);
        let key = match read_if_exists(&key_path)? {
            Some(raw) => STANDARD
                .decode(String::from_utf8_lossy(&raw).trim())
                .ok()
                .filter(|k| k.len() >= 32)
                .with_context(|| format!("{} is not a base64 key of 32 bytes or more", key_path.display()))?,
            None => {
                let mut key = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                write_atomic_mode(&key_path, STANDARD.encode(&key).as_bytes(), 0o600)?;
                key
            }
        };
        let store = Arc::new(Self { registry, lua_dir, key, lock: Default::default() });
        let records = store.records()?;
        store.publish(&records)?;
        Ok(store)
    }

    pub fn records(&self) -> anyhow::Result<Vec<Record>> {
        match read_if_exists(&self.registry)? {
            None => Ok(Vec::new()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a gateway token registry", self.registry.display())),
        }
    }

    fn save(&self, records: &[Record]) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(records).expect("records serialize");
        write_atomic_mode(&self.registry, &bytes, 0o600)?;
        self.publish(records)
    }

    /// Writes the key and the revoked ids where the proxy reads them.
    fn publish(&self, records: &[Record]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.lua_dir)?;
        write_atomic_mode(&self.lua_dir.join(LUA_KEY_FILE), STANDARD.encode(&self.key).as_bytes(), 0o600)?;
        let revoked: Vec<&str> = records.iter().filter(|r| r.revoked).map(|r| r.id.as_str()).collect();
        let doc = serde_json::json!({ "revoked": revoked });
        write_atomic(&self.lua_dir.join(LUA_STATE_FILE), doc.to_string().as_bytes())
    }

    /// Mints a token: its record and the token itself (shown once, never stored).
    pub async fn mint(&self, request: &MintRequest, now: u64) -> anyhow::Result<(Record, String)> {
        let _one = self.lock.lock().await;
        let mut records = self.records()?;
        let mut raw_id = [0u8; 9];
        rand::thread_rng().fill_bytes(&mut raw_id);
        let id = URL_SAFE_NO_PAD.encode(raw_id);
        let expires_at = now + request.expires_in_seconds;
        let name = request.user_name.as_deref().unwrap_or(&request.label);
        let claims = Claims {
            id: &id,
            kind: request.kind,
            user: request.user.as_deref(),
            name,
            endpoints: &request.endpoints,
            exp: expires_at,
        };
        let token = sign(&self.key, &claims);
        let record = Record {
            id: id.clone(),
            kind: request.kind,
            label: request.label.clone(),
            user: request.user.clone(),
            endpoints: request.endpoints.clone(),
            created_at: now,
            expires_at,
            sha256: hex_sha256(&token),
            revoked: false,
        };
        records.push(record.clone());
        self.save(&records)?;
        Ok((record, token))
    }

    /// Revokes token `id`: `None` if there is no such token.
    pub async fn revoke(&self, id: &str) -> anyhow::Result<Option<Record>> {
        let _one = self.lock.lock().await;
        let mut records = self.records()?;
        let Some(record) = records.iter_mut().find(|r| r.id == id) else { return Ok(None) };
        record.revoked = true;
        let record = record.clone();
        self.save(&records)?;
        Ok(Some(record))
    }
}

fn key_path(registry: &Path) -> PathBuf {
    let mut name = registry.file_name().unwrap_or_default().to_os_string();
    name.push(".key");
    registry.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: Kind) -> MintRequest {
        MintRequest {
            kind,
            label: "ci".into(),
            user: (kind == Kind::User).then(|| "user-1".into()),
            user_name: None,
            endpoints: if kind == Kind::Endpoint { vec!["task-a".into()] } else { vec![] },
            expires_in_seconds: 3600,
        }
    }

    #[tokio::test]
    async fn minted_tokens_are_signed_hashed_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path().join("tokens.json"), dir.path().join("lua")).unwrap();
        let (record, token) = store.mint(&request(Kind::Endpoint), 1000).await.unwrap();
        assert!(token.starts_with("cgw1."));
        let registry = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!registry.contains(&token) && registry.contains(&hex_sha256(&token)), "hash only");
        // The signature is HMAC-SHA256 of `cgw1.<payload>` with the published key.
        let key = STANDARD
            .decode(std::fs::read_to_string(dir.path().join("lua").join(LUA_KEY_FILE)).unwrap())
            .unwrap();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(signed.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for secret in [dir.path().join("tokens.json.key"), dir.path().join("lua").join(LUA_KEY_FILE)] {
            assert_eq!(std::fs::metadata(secret).unwrap().permissions().mode() & 0o777, 0o600);
        }
        store.revoke(&record.id).await.unwrap().unwrap();
        let state = std::fs::read_to_string(dir.path().join("lua").join(LUA_STATE_FILE)).unwrap();
        assert!(state.contains(&record.id), "{state}");
        assert!(store.revoke("nope").await.unwrap().is_none());
        // The key survives a restart: tokens stay valid.
        let again = TokenStore::open(dir.path().join("tokens.json"), dir.path().join("lua")).unwrap();
        assert_eq!(again.key, store.key);
    }

    #[test]
    fn requests_are_validated_field_by_field() {
        assert!(request(Kind::User).validate().is_ok());
        assert!(request(Kind::Endpoint).validate().is_ok());
        let bad = [
            MintRequest { label: "".into(), ..request(Kind::User) },
            MintRequest { label: "a\nb".into(), ..request(Kind::User) },
            MintRequest { user: None, ..request(Kind::User) },
            MintRequest { user: Some("a b".into()), ..request(Kind::User) },
            MintRequest { endpoints: vec![], ..request(Kind::Endpoint) },
            MintRequest { endpoints: vec!["a\"b".into()], ..request(Kind::Endpoint) },
            MintRequest { expires_in_seconds: 0, ..request(Kind::Endpoint) },
            MintRequest { user: Some("u".into()), ..request(Kind::Endpoint) },
        ];
        for r in bad {
            assert!(r.validate().is_err(), "{r:?}");
        }
    }
}
