//! Automatic certificates over ACME (RFC 8555, `instant-acme`), HTTP-01: the router writes each
//! answer into the folder the proxy's plain listener serves `/.well-known/acme-challenge/` from.
//! The account and the certificates live in the ACME state folder (a volume), so a restart serves
//! what was issued before and asks for nothing new until renewal is due.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

use super::certs::{self, LoadedCert};
use crate::apply::files;
use crate::config::AcmeSettings;

const CERTS_DIR: &str = "certs";

/// How long an order may take (pebble and Let's Encrypt answer in seconds).
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

/// The certificates the ACME folder holds now (one file per host), each checked as a file
/// certificate would be; unreadable ones are reported and left out.
pub fn stored(settings: &AcmeSettings) -> Vec<certs::Scanned> {
    let dir = settings.state_dir.join(CERTS_DIR);
    if !dir.is_dir() {
        return Vec::new();
    }
    certs::scan_dir(&dir).unwrap_or_else(|e| vec![(dir, Err(e))])
}

/// The file the certificate for `host` is kept in.
fn cert_path(settings: &AcmeSettings, host: &str) -> PathBuf {
    settings.state_dir.join(CERTS_DIR).join(format!("{host}.pem"))
}

/// Issues a certificate for `host` and stores it (chain and key in one 0600 file).
/// `challenges` is the folder the proxy serves HTTP-01 answers from, as the router sees it.
pub async fn issue(settings: &AcmeSettings, challenges: &Path, host: &str) -> anyhow::Result<LoadedCert> {
    let account = account(settings).await?;
    let identifiers = [Identifier::Dns(host.to_owned())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await.context("new order")?;
    let mut written = Vec::new();
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.context("authorization")?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => bail!("authorization for {host} is {other:?}"),
            }
            let mut challenge =
                authz.challenge(ChallengeType::Http01).context("the ACME server offers no http-01 challenge")?;
            let path = challenges.join(&challenge.token);
            std::fs::create_dir_all(challenges).with_context(|| format!("creating {}", challenges.display()))?;
            files::write_atomic(&path, challenge.key_authorization().as_str().as_bytes())?;
            written.push(path);
            challenge.set_ready().await.context("challenge ready")?;
        }
        let retries = RetryPolicy::new().timeout(ORDER_TIMEOUT);
        let status = order.poll_ready(&retries).await.context("waiting for the order")?;
        if status != OrderStatus::Ready {
            bail!("order for {host} is {status:?}: the ACME server could not fetch the HTTP-01 answer (is port 80 of {host} this proxy?)");
        }
        let key_pem = order.finalize().await.context("finalize")?;
        let chain_pem = order.poll_certificate(&retries).await.context("certificate")?;
        Ok((chain_pem, key_pem))
    }
    .await;
    for path in written {
        let _ = std::fs::remove_file(path);
    }
    let (chain_pem, key_pem) = result?;
    let path = cert_path(settings, host);
    let cert = certs::load(&path, chain_pem.as_bytes(), Some(key_pem.as_bytes()))
        .map_err(|e| anyhow::anyhow!("the issued certificate: {e}"))?;
    std::fs::create_dir_all(path.parent().expect("in a folder"))?;
    files::write_atomic_mode(&path, &cert.pem, 0o600)?;
    Ok(cert)
}

/// The account file: one per ACME server, so that pointing the router at another CA creates an
/// account there instead of presenting this one's credentials.
fn account_path(settings: &AcmeSettings) -> PathBuf {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(settings.directory_url.as_bytes()));
    settings.state_dir.join(format!("account-{}.json", &hash[..12]))
}

/// The stored account, else a new one (stored before it is used).
async fn account(settings: &AcmeSettings) -> anyhow::Result<Account> {
    let builder = || match &settings.ca_file {
        Some(ca) => Account::builder_with_root(ca).with_context(|| format!("ACME CA file {}", ca.display())),
        None => Account::builder().context("ACME HTTP client"),
    };
    let path = account_path(settings);
    if let Some(bytes) = files::read_if_exists(&path)? {
        let credentials: AccountCredentials =
            serde_json::from_slice(&bytes).with_context(|| format!("{} does not parse", path.display()))?;
        return builder()?.from_credentials(credentials).await.context("loading the ACME account");
    }
    let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = match &settings.eab {
        Some((kid, key)) => {
            use base64::Engine;
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(key.expose().trim_end_matches('='))
                .context("the EAB HMAC key is not base64url")?;
            Some(ExternalAccountKey::new(kid.clone(), &raw))
        }
        None => None,
    };
    let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = builder()?
        .create(&new, settings.directory_url.clone(), eab.as_ref())
        .await
        .with_context(|| format!("creating an ACME account at {}", settings.directory_url))?;
    std::fs::create_dir_all(&settings.state_dir)
        .with_context(|| format!("creating {}", settings.state_dir.display()))?;
    files::write_atomic_mode(&path, &serde_json::to_vec(&credentials)?, 0o600)?;
    tracing::info!(directory = %settings.directory_url, "ACME account created");
    Ok(account)
}
