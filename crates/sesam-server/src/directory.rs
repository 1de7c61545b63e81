//! The LDAP / Active Directory adapter of the password check: the service account finds the
//! user's entry, then a bind as that entry proves the password.
//!
//! Servers are tried in order while they cannot be reached. Once a server has been given the
//! user's password the answer stands, whatever it is: the bind is never repeated on the next
//! server, so one attempt counts once against the directory's own lockout too.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ldap3::{
    ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions,
};
use sesam_core::Username;
use sesam_store::DirectoryUser;

use crate::config::DirectoryConfig;
use crate::credentials::{Claim, Password, PasswordCheck, Verdict};

/// LDAP result codes (RFC 4511, appendix A) the adapter tells apart.
const SUCCESS: u32 = 0;
const SIZE_LIMIT_EXCEEDED: u32 = 4;
const INVALID_CREDENTIALS: u32 = 49;
const UNWILLING_TO_PERFORM: u32 = 53;

/// What a full read of the directory found.
#[derive(Debug, Default)]
pub struct Listing {
    pub users: Vec<DirectoryUser>,
    /// Entries without a stable id or a usable username: left alone, reported.
    pub unusable: Vec<String>,
}

pub struct Directory {
    config: DirectoryConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Why a server gave no answer that counts.
#[derive(Debug, thiserror::Error)]
enum Trouble {
    /// Not reachable, too slow, or the connection broke: the next server may answer.
    #[error("{0}")]
    Unreachable(String),
    /// Reached, but it will not do its part (wrong service password, wrong base): another
    /// server of the same directory would say the same.
    #[error("{0}")]
    Refusing(String),
}

impl Directory {
    /// Reads `ldap_ca_file` when given: a start-up error if it is not a PEM certificate file.
    pub fn new(config: DirectoryConfig) -> anyhow::Result<Directory> {
        let tls = match &config.ca_file {
            None => None,
            Some(path) => {
                use rustls::pki_types::pem::PemObject;
                use rustls::pki_types::CertificateDer;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| anyhow::anyhow!("ldap_ca_file {}: {e}", path.display()))?
                {
                    let cert =
                        cert.map_err(|e| anyhow::anyhow!("ldap_ca_file {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| anyhow::anyhow!("ldap_ca_file {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    anyhow::bail!("ldap_ca_file {}: no certificate in it", path.display());
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(config))
            }
        };
        Ok(Directory { config, tls })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_seconds)
    }

    /// The search filter for a typed username, escaped (RFC 4515) so that `*`, `(`, `)`,
    /// `\` and NUL in it are matched literally and cannot widen the search.
    pub fn filter_for(&self, username: &str) -> String {
        self.config
            .user_filter
            .replace("{username}", &ldap_escape(username))
    }

    async fn connect(&self, url: &str) -> Result<Ldap, Trouble> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.timeout());
        if url.starts_with("ldap://") && self.config.starttls {
            settings = settings.set_starttls(true);
        }
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| Trouble::Unreachable(format!("cannot connect: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "directory connection ended");
            }
        });
        Ok(ldap)
    }

    /// The filter that finds a linked user by its stable id, through the user filter (so an
    /// entry the filter leaves out, a disabled account, is not found).
    fn id_filter(&self, directory_id: &str) -> String {
        let value = match uuid::Uuid::parse_str(directory_id) {
            // objectGUID is binary: each byte escaped, in the order AD stores them.
            Ok(guid) if self.config.id_attribute.eq_ignore_ascii_case("objectGUID") => guid
                .to_bytes_le()
                .iter()
                .map(|b| format!("\\{b:02x}"))
                .collect(),
            _ => ldap_escape(directory_id).into_owned(),
        };
        format!(
            "(&({}={value}){})",
            self.config.id_attribute,
            self.config.user_filter.replace("{username}", "*")
        )
    }

    /// Whether the directory still lists the user linked by `directory_id`: `Some(false)`
    /// when it is disabled or gone there, `None` when no server could say.
    pub async fn still_lists(&self, directory_id: &str) -> Option<bool> {
        let filter = self.id_filter(directory_id);
        for url in &self.config.urls {
            let found = match self.connect(url).await {
                Ok(mut ldap) => {
                    let found = self.find(&mut ldap, &filter).await;
                    let _ = ldap.unbind().await;
                    found
                }
                Err(e) => Err(e),
            };
            match found {
                Ok(entry) => return Some(entry.is_some()),
                Err(Trouble::Unreachable(why)) => {
                    tracing::warn!(%url, %why, "directory server unreachable; trying the next");
                }
                Err(Trouble::Refusing(why)) => {
                    tracing::error!(%url, %why, "directory cannot be asked about a user");
                    return None;
                }
            }
        }
        None
    }

    /// Every user the directory lists (the user filter with any username), read in pages.
    /// An error when no server gave the whole list: a sync then changes nothing.
    pub async fn list_users(&self) -> Result<Listing, String> {
        let mut last = String::from("no ldap_urls");
        for url in &self.config.urls {
            match self.list_on(url).await {
                Ok(listing) => return Ok(listing),
                Err(Trouble::Unreachable(why)) => {
                    tracing::warn!(%url, %why, "directory server unreachable; trying the next");
                    last = format!("{url}: {why}");
                }
                Err(Trouble::Refusing(why)) => return Err(format!("{url}: {why}")),
            }
        }
        Err(last)
    }

    async fn list_on(&self, url: &str) -> Result<Listing, Trouble> {
        use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
        let mut ldap = self.connect(url).await?;
        self.bind_service(&mut ldap).await?;
        let adapters: Vec<Box<dyn Adapter<String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(500)),
        ];
        let attributes: Vec<String> = self.attributes().iter().map(|a| a.to_string()).collect();
        let filter = self.config.user_filter.replace("{username}", "*");
        let mut stream = ldap
            .with_timeout(self.timeout())
            .streaming_search_with(
                adapters,
                &self.config.base_dn,
                Scope::Subtree,
                &filter,
                attributes,
            )
            .await
            .map_err(|e| Trouble::Unreachable(format!("search: {e}")))?;
        let mut listing = Listing::default();
        loop {
            match stream.next().await {
                Ok(Some(entry)) => {
                    let entry = SearchEntry::construct(entry);
                    match self.describe(&entry) {
                        Some(user) => listing.users.push(user),
                        None => listing.unusable.push(entry.dn),
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(Trouble::Unreachable(format!("search: {e}"))),
            }
        }
        let result = stream.finish().await;
        let _ = ldap.unbind().await;
        if result.rc != SUCCESS {
            return Err(Trouble::Refusing(format!(
                "listing users under {:?}: result code {} {}",
                self.config.base_dn, result.rc, result.text
            )));
        }
        Ok(listing)
    }

    fn attributes(&self) -> [&str; 5] {
        [
            self.config.username_attribute.as_str(),
            self.config.id_attribute.as_str(),
            self.config.display_name_attribute.as_str(),
            self.config.email_attribute.as_str(),
            "cn",
        ]
    }

    async fn bind_service(&self, ldap: &mut Ldap) -> Result<(), Trouble> {
        let bound = ldap
            .with_timeout(self.timeout())
            .simple_bind(&self.config.bind_dn, self.config.bind_password.expose())
            .await
            .map_err(|e| Trouble::Unreachable(format!("service account bind: {e}")))?;
        match bound.rc {
            SUCCESS => Ok(()),
            INVALID_CREDENTIALS => Err(Trouble::Refusing(format!(
                "the directory refused the service account {:?} (invalid credentials): \
                 check ldap_bind_dn and ldap_bind_password",
                self.config.bind_dn
            ))),
            rc => Err(Trouble::Refusing(format!(
                "service account bind: result code {rc} {}",
                bound.text
            ))),
        }
    }

    /// Binds as the service account and finds the one entry `filter` matches.
    async fn find(&self, ldap: &mut Ldap, filter: &str) -> Result<Option<SearchEntry>, Trouble> {
        self.bind_service(ldap).await?;
        let attributes = self.attributes();
        let found = ldap
            .with_timeout(self.timeout())
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(
                &self.config.base_dn,
                Scope::Subtree,
                filter,
                attributes.to_vec(),
            )
            .await
            .map_err(|e| Trouble::Unreachable(format!("search: {e}")))?;
        let ldap3::SearchResult(entries, result) = found;
        match result.rc {
            SUCCESS if entries.len() <= 1 => {}
            SUCCESS | SIZE_LIMIT_EXCEEDED => {
                // Two entries answer to one name: neither is taken.
                tracing::warn!(%filter, "more than one directory entry matches; none is taken");
                return Ok(None);
            }
            rc => {
                return Err(Trouble::Refusing(format!(
                    "search under {:?}: result code {rc} {}",
                    self.config.base_dn, result.text
                )))
            }
        }
        Ok(entries.into_iter().next().map(SearchEntry::construct))
    }

    /// Binds as `entry` with `password`: the one step that is never repeated elsewhere.
    async fn prove(&self, ldap: &mut Ldap, entry: &SearchEntry, password: &Password) -> Verdict {
        if entry.dn.is_empty() || password.expose().is_empty() {
            // Either would make the bind anonymous (RFC 4513 5.1.2), which "succeeds".
            return Verdict::Refused;
        }
        let bound = ldap
            .with_timeout(self.timeout())
            .simple_bind(&entry.dn, password.expose())
            .await;
        let _ = ldap.unbind().await;
        match bound {
            Ok(r) if r.rc == SUCCESS => match self.describe(entry) {
                Some(user) => Verdict::Proven(Some(user)),
                None => {
                    tracing::error!(
                        dn = %entry.dn,
                        attribute = %self.config.id_attribute,
                        "the directory entry has no stable id (ldap_id_attribute); refusing the login"
                    );
                    Verdict::Unavailable
                }
            },
            // AD answers 53 for a disabled account or one that must change its password.
            Ok(r) if matches!(r.rc, INVALID_CREDENTIALS | UNWILLING_TO_PERFORM) => Verdict::Refused,
            Ok(r) => {
                tracing::warn!(dn = %entry.dn, rc = r.rc, text = %r.text, "user bind: unexpected result");
                Verdict::Unavailable
            }
            Err(e) => {
                tracing::warn!(dn = %entry.dn, error = %e, "user bind: no answer; not repeated on another server");
                Verdict::Unavailable
            }
        }
    }

    /// What the entry says of the user; `None` without a stable id.
    fn describe(&self, entry: &SearchEntry) -> Option<DirectoryUser> {
        let text = |name: &str| -> Option<String> {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let directory_id = text(&self.config.id_attribute).or_else(|| {
            entry
                .bin_attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&self.config.id_attribute))
                .and_then(|(_, v)| v.first())
                .map(|bytes| binary_id(bytes))
        })?;
        let username =
            text(&self.config.username_attribute).and_then(|u| Username::parse(&u).ok())?;
        let display_name = text(&self.config.display_name_attribute)
            .or_else(|| text("cn"))
            .unwrap_or_else(|| username.as_str().to_owned());
        Some(DirectoryUser {
            directory_id,
            username,
            display_name,
            email: text(&self.config.email_attribute),
        })
    }

    async fn check_on(&self, url: &str, claim: &Claim<'_>) -> Result<Verdict, Trouble> {
        let mut ldap = self.connect(url).await?;
        let found = self
            .find(&mut ldap, &self.filter_for(claim.username.as_str()))
            .await;
        let entry = match found {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                let _ = ldap.unbind().await;
                return Ok(Verdict::Refused);
            }
            Err(e) => {
                let _ = ldap.unbind().await;
                return Err(e);
            }
        };
        Ok(self.prove(&mut ldap, &entry, claim.password).await)
    }
}

/// A binary stable id as text: AD's 16-byte objectGUID in its usual (mixed-endian) form,
/// anything else in hex.
fn binary_id(bytes: &[u8]) -> String {
    match <[u8; 16]>::try_from(bytes) {
        Ok(guid) => uuid::Uuid::from_bytes_le(guid).to_string(),
        Err(_) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

impl PasswordCheck for Directory {
    fn check<'a>(&'a self, claim: Claim<'a>) -> BoxFuture<'a, anyhow::Result<Verdict>> {
        Box::pin(async move {
            for url in &self.config.urls {
                match self.check_on(url, &claim).await {
                    Ok(verdict) => return Ok(verdict),
                    Err(Trouble::Unreachable(why)) => {
                        tracing::warn!(%url, %why, "directory server unreachable; trying the next");
                    }
                    Err(Trouble::Refusing(why)) => {
                        tracing::error!(%url, %why, "directory cannot check passwords");
                        return Ok(Verdict::Unavailable);
                    }
                }
            }
            tracing::error!(
                urls = ?self.config.urls,
                "no directory server answered; password logins of directory users wait for it"
            );
            Ok(Verdict::Unavailable)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn directory(filter: &str) -> Directory {
        Directory::new(DirectoryConfig {
            urls: vec!["ldaps://dc1.example.dk".into()],
            starttls: true,
            allow_plain: false,
            ca_file: None,
            bind_dn: "cn=sesam,dc=example,dc=dk".into(),
            bind_password: Secret::new("s3rvice"),
            base_dn: "dc=example,dc=dk".into(),
            user_filter: filter.into(),
            username_attribute: "uid".into(),
            id_attribute: "entryUUID".into(),
            display_name_attribute: "displayName".into(),
            email_attribute: "mail".into(),
            timeout_seconds: 5,
        })
        .unwrap()
    }

    #[test]
    fn the_username_cannot_widen_the_filter() {
        let d = directory("(&(objectClass=inetOrgPerson)(uid={username}))");
        assert_eq!(
            d.filter_for("anna"),
            "(&(objectClass=inetOrgPerson)(uid=anna))"
        );
        assert_eq!(
            d.filter_for("*"),
            "(&(objectClass=inetOrgPerson)(uid=\\2a))"
        );
        assert_eq!(
            d.filter_for("x)(uid=*"),
            "(&(objectClass=inetOrgPerson)(uid=x\\29\\28uid=\\2a))"
        );
        assert_eq!(
            d.filter_for("a\0b\\"),
            "(&(objectClass=inetOrgPerson)(uid=a\\00b\\5c))"
        );
        // Every escaped filter still parses as one equality match, not a wildcard.
        for name in ["*", "x)(uid=*", "a\0b", "(", "\\"] {
            assert!(ldap3::parse_filter(d.filter_for(name)).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn a_linked_user_is_found_by_its_stable_id_through_the_user_filter() {
        let d = directory("(&(objectClass=inetOrgPerson)(uid={username}))");
        assert_eq!(
            d.id_filter("f39ce700-8255-1041-96b2-dbc562396746"),
            "(&(entryUUID=f39ce700-8255-1041-96b2-dbc562396746)(&(objectClass=inetOrgPerson)(uid=*)))"
        );
        assert_eq!(
            d.id_filter("x)(uid=*"),
            "(&(entryUUID=x\\29\\28uid=\\2a)(&(objectClass=inetOrgPerson)(uid=*)))"
        );
        let mut ad = directory("(sAMAccountName={username})");
        ad.config.id_attribute = "objectGUID".into();
        assert_eq!(
            ad.id_filter("00112233-4455-6677-8899-aabbccddeeff"),
            "(&(objectGUID=\\33\\22\\11\\00\\55\\44\\77\\66\\88\\99\\aa\\bb\\cc\\dd\\ee\\ff)(sAMAccountName=*))"
        );
        assert!(ldap3::parse_filter(ad.id_filter("00112233-4455-6677-8899-aabbccddeeff")).is_ok());
    }

    #[test]
    fn an_ad_object_guid_reads_as_its_usual_text() {
        let guid = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(binary_id(&guid), "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(binary_id(&[0xab, 0x01]), "ab01");
    }

    #[test]
    fn the_service_password_is_not_shown() {
        let d = directory("(uid={username})");
        assert!(!format!("{:?}", d.config).contains("s3rvice"));
    }
}
