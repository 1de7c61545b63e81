//! The LDAP / Active Directory adapter of the password check: the service account finds the
//! user's entry, then a bind as that entry proves the password.
//!
//! Servers are tried in order while they cannot be reached. Once a server has been given the
//! user's password the answer stands, whatever it is: the bind is never repeated on the next
//! server, so one attempt counts once against the directory's own lockout too.
//!
//! Roles come from groups: the service account reads a configured group's `member`
//! attribute (OpenLDAP's groupOfNames, AD's group), so no memberOf overlay is needed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ldap3::{
    ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, ResultEntry, Scope, SearchEntry,
    SearchOptions,
};
use sesam_core::Username;
use sesam_store::{DirectoryRoles, DirectoryUser};

use crate::config::DirectoryConfig;
use crate::credentials::{Claim, Password, PasswordCheck, Verdict};

/// LDAP result codes (RFC 4511, appendix A) the adapter tells apart.
const SUCCESS: u32 = 0;
const SIZE_LIMIT_EXCEEDED: u32 = 4;
const NO_SUCH_OBJECT: u32 = 32;
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

/// Which role a group gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Admin,
    Pilot,
    PasswordOnly,
}

/// The members of each configured group (normalised DNs).
#[derive(Debug, Default)]
struct Members(Vec<(Role, HashSet<String>)>);

impl Members {
    fn roles_of(&self, dn: &str) -> DirectoryRoles {
        let dn = normalize_dn(dn);
        let mut roles = DirectoryRoles::default();
        for (role, members) in &self.0 {
            let member = Some(dn.as_ref().is_some_and(|dn| members.contains(dn)));
            match role {
                Role::Admin => roles.is_admin = member,
                Role::Pilot => roles.in_pilot = member,
                Role::PasswordOnly => roles.password_only = member,
            }
        }
        roles
    }
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

    /// The configured role groups.
    fn groups(&self) -> Vec<(Role, &str)> {
        let g = &self.config.groups;
        [
            (Role::Admin, &g.admin),
            (Role::Pilot, &g.pilot),
            (Role::PasswordOnly, &g.password_only),
        ]
        .into_iter()
        .filter_map(|(role, dn)| dn.as_deref().map(|dn| (role, dn)))
        .collect()
    }

    /// The roles of the entry `dn` from its groups, asking each group whether `dn` is a
    /// member (one small search each, whatever the group's size). The connection must be
    /// bound as the service account.
    async fn roles_for(&self, ldap: &mut Ldap, dn: &str) -> Result<DirectoryRoles, Trouble> {
        let mut members = Members::default();
        for (role, group) in self.groups() {
            let filter = format!("(member={})", ldap_escape(dn));
            let found = ldap
                .with_timeout(self.timeout())
                .search(group, Scope::Base, &filter, vec!["1.1"])
                .await
                .map_err(|e| Trouble::Unreachable(format!("group search: {e}")))?;
            let ldap3::SearchResult(entries, result) = found;
            match result.rc {
                SUCCESS => {}
                NO_SUCH_OBJECT => {
                    return Err(Trouble::Refusing(format!(
                        "the role group {group:?} does not exist in the directory"
                    )))
                }
                rc => {
                    return Err(Trouble::Refusing(format!(
                        "group {group:?}: result code {rc} {}",
                        result.text
                    )))
                }
            }
            let mut set = HashSet::new();
            if entries.into_iter().any(|e| read_entry(e).is_some()) {
                set.extend(normalize_dn(dn));
            }
            members.0.push((role, set));
        }
        Ok(members.roles_of(dn))
    }

    /// Every member of every configured group, read from the groups' `member` attribute;
    /// Active Directory hands a large group's members out in ranges, which are followed.
    async fn all_members(&self, ldap: &mut Ldap) -> Result<Members, Trouble> {
        let mut members = Members::default();
        for (role, group) in self.groups() {
            let mut set = HashSet::new();
            let mut wanted = "member".to_owned();
            // A bound on the rounds: a directory that keeps answering "more" is not followed
            // for ever (1500 members a round is AD's default).
            for _ in 0..10_000 {
                let found = ldap
                    .with_timeout(self.timeout())
                    .search(group, Scope::Base, "(objectClass=*)", vec![wanted.as_str()])
                    .await
                    .map_err(|e| Trouble::Unreachable(format!("group search: {e}")))?;
                let ldap3::SearchResult(entries, result) = found;
                match result.rc {
                    SUCCESS => {}
                    NO_SUCH_OBJECT => {
                        return Err(Trouble::Refusing(format!(
                            "the role group {group:?} does not exist in the directory"
                        )))
                    }
                    rc => {
                        return Err(Trouble::Refusing(format!(
                            "group {group:?}: result code {rc} {}",
                            result.text
                        )))
                    }
                }
                let Some(entry) = entries.into_iter().find_map(read_entry) else {
                    return Err(Trouble::Refusing(format!(
                        "the role group {group:?} cannot be read by the service account"
                    )));
                };
                let mut next = None;
                for (name, values) in &entry.attrs {
                    let lower = name.to_ascii_lowercase();
                    if lower == "member" {
                        set.extend(values.iter().filter_map(|v| normalize_dn(v)));
                    } else if let Some(range) = lower.strip_prefix("member;range=") {
                        set.extend(values.iter().filter_map(|v| normalize_dn(v)));
                        // "0-1499": more from 1500 on; "1500-*": the last part.
                        match range.split_once('-') {
                            Some((_, "*")) => {}
                            Some((_, end)) => {
                                let end: u64 = end.parse().map_err(|_| {
                                    Trouble::Refusing(format!(
                                        "group {group:?}: member range {range:?}"
                                    ))
                                })?;
                                next = Some(format!("member;range={}-*", end + 1));
                            }
                            None => {
                                return Err(Trouble::Refusing(format!(
                                    "group {group:?}: member range {range:?}"
                                )))
                            }
                        }
                    }
                }
                match next {
                    Some(more) => wanted = more,
                    None => break,
                }
            }
            members.0.push((role, set));
        }
        Ok(members)
    }

    /// At a login: the roles from the groups, or, when they cannot be read, none decided
    /// (the flags stay as they are; the sync reports the trouble).
    async fn roles_or_unknown(&self, ldap: &mut Ldap, dn: &str) -> DirectoryRoles {
        if !self.config.groups.any() {
            return DirectoryRoles::default();
        }
        match self.roles_for(ldap, dn).await {
            Ok(roles) => roles,
            Err(e) => {
                tracing::error!(%dn, why = %e, "the role groups cannot be read; roles left as they are");
                DirectoryRoles::default()
            }
        }
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

    /// What the directory says now of the user linked by `directory_id`: `Some(None)` when
    /// it is disabled or gone there, `None` when no server could say.
    pub async fn current_entry(&self, directory_id: &str) -> Option<Option<DirectoryUser>> {
        let filter = self.id_filter(directory_id);
        for url in &self.config.urls {
            let found = match self.connect(url).await {
                Ok(mut ldap) => {
                    let found = match self.find(&mut ldap, &filter).await {
                        Ok(Some(entry)) => match self.describe(&entry) {
                            Some(mut user) => {
                                user.roles = self.roles_or_unknown(&mut ldap, &entry.dn).await;
                                Ok(Some(user))
                            }
                            None => Ok(None),
                        },
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    };
                    let _ = ldap.unbind().await;
                    found
                }
                Err(e) => Err(e),
            };
            match found {
                Ok(entry) => return Some(entry),
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
        let mut dns = Vec::new();
        loop {
            match stream.next().await {
                // AD's continuation references (other domains) are not entries.
                Ok(Some(entry)) if entry.is_ref() || entry.is_intermediate() => {}
                Ok(Some(entry)) => match read_entry(entry) {
                    Some(entry) => match self.describe(&entry) {
                        Some(user) => {
                            listing.users.push(user);
                            dns.push(entry.dn);
                        }
                        None => listing.unusable.push(entry.dn),
                    },
                    // Not a partial listing: the user behind it would be disabled.
                    None => return Err(malformed()),
                },
                Ok(None) => break,
                Err(e) => return Err(Trouble::Unreachable(format!("search: {e}"))),
            }
        }
        let result = stream.finish().await;
        if result.rc != SUCCESS {
            let _ = ldap.unbind().await;
            return Err(Trouble::Refusing(format!(
                "listing users under {:?}: result code {} {}",
                self.config.base_dn, result.rc, result.text
            )));
        }
        // The groups are read whole or the listing fails: a half-read group would take a
        // role from its unread members.
        let members = self.all_members(&mut ldap).await;
        let _ = ldap.unbind().await;
        let members = members?;
        for (user, dn) in listing.users.iter_mut().zip(&dns) {
            user.roles = members.roles_of(dn);
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
        // Active Directory adds continuation references (other domains) to a search at the
        // root; they are not entries, and not a second match.
        let entries: Vec<ResultEntry> = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .collect();
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
        match entries.into_iter().next() {
            Some(entry) => read_entry(entry).map(Some).ok_or_else(malformed),
            None => Ok(None),
        }
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
            roles: DirectoryRoles::default(),
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
        let verdict = match self.prove(&mut ldap, &entry, claim.password).await {
            // The user may not read the groups: the service account asks.
            Verdict::Proven(Some(mut user)) if self.config.groups.any() => {
                match self.bind_service(&mut ldap).await {
                    Ok(()) => user.roles = self.roles_or_unknown(&mut ldap, &entry.dn).await,
                    Err(e) => {
                        tracing::error!(why = %e, "the role groups cannot be read; roles left as they are")
                    }
                }
                Verdict::Proven(Some(user))
            }
            verdict => verdict,
        };
        let _ = ldap.unbind().await;
        Ok(verdict)
    }
}

fn malformed() -> Trouble {
    Trouble::Refusing("the directory answered with a malformed search entry".to_owned())
}

/// An entry as ldap3's `SearchEntry`, without its `construct`, which panics on an entry
/// that is not well-formed (a directory's answer is outside input). `None` for such an
/// entry, a referral or an intermediate message.
fn read_entry(re: ResultEntry) -> Option<SearchEntry> {
    let mut tags = re.0.match_id(4)?.expect_constructed()?.into_iter();
    let dn = String::from_utf8(tags.next()?.expect_primitive()?).ok()?;
    let mut attrs: HashMap<String, Vec<String>> = HashMap::new();
    let mut bin_attrs: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for attribute in tags.next()?.expect_constructed()? {
        let mut parts = attribute.expect_constructed()?.into_iter();
        let name = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
        let mut values = Vec::new();
        for value in parts.next()?.expect_constructed()? {
            values.push(value.expect_primitive()?);
        }
        // Like `construct`: text when every value is UTF-8, else all bytes.
        match values
            .iter()
            .map(|v| String::from_utf8(v.clone()).ok())
            .collect::<Option<Vec<String>>>()
        {
            Some(text) => {
                attrs.insert(name, text);
            }
            None => {
                bin_attrs.insert(name, values);
            }
        }
    }
    Some(SearchEntry {
        dn,
        attrs,
        bin_attrs,
    })
}

/// A DN (RFC 4514) in one form for comparing two spellings of it: attribute types and
/// values lower-cased, escapes resolved, spaces around the separators dropped, the parts of
/// a multi-valued RDN sorted. `None` when the text is not a DN.
pub fn normalize_dn(dn: &str) -> Option<String> {
    let chars: Vec<char> = dn.trim().chars().collect();
    if chars.is_empty() {
        return None;
    }
    let mut rdns: Vec<String> = Vec::new();
    let mut avas: Vec<String> = Vec::new();
    let mut i = 0;
    loop {
        // The attribute type: a name (letter, then letters, digits, hyphens) or an OID.
        let start = i;
        while i < chars.len() && chars[i] != '=' {
            i += 1;
        }
        if i == chars.len() {
            return None;
        }
        let kind: String = chars[start..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        let name_ok = kind.starts_with(|c: char| c.is_ascii_alphabetic())
            && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let oid_ok = !kind.is_empty()
            && kind
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !(name_ok || oid_ok) {
            return None;
        }
        i += 1; // '='
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        // The value, up to an unescaped ',' or '+'.
        let mut bytes: Vec<u8> = Vec::new();
        let mut kept = 0; // bytes up to the last one that is not an unescaped trailing space
        while i < chars.len() && chars[i] != ',' && chars[i] != '+' {
            let c = chars[i];
            if c == '\\' {
                let next = *chars.get(i + 1)?;
                if let (Some(h), Some(l)) = (
                    next.to_digit(16),
                    chars.get(i + 2).and_then(|c| c.to_digit(16)),
                ) {
                    bytes.push((h * 16 + l) as u8);
                    i += 3;
                } else if " \"#+,;<=>\\".contains(next) {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(next.encode_utf8(&mut buf).as_bytes());
                    i += 2;
                } else {
                    return None;
                }
                kept = bytes.len();
                continue;
            }
            if matches!(c, '"' | ';' | '<' | '>') || c == '\0' {
                return None;
            }
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            if c != ' ' {
                kept = bytes.len();
            }
            i += 1;
        }
        bytes.truncate(kept);
        let value = String::from_utf8(bytes).ok()?;
        if value.is_empty() {
            return None;
        }
        let mut escaped = String::new();
        for c in value.to_lowercase().chars() {
            if matches!(c, ',' | '+' | '=' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        avas.push(format!("{kind}={escaped}"));
        if i == chars.len() || chars[i] == ',' {
            avas.sort();
            rdns.push(avas.join("+"));
            avas.clear();
        }
        if i == chars.len() {
            break;
        }
        i += 1; // ',' or '+'
        if i == chars.len() {
            return None; // a separator with nothing after it
        }
    }
    Some(rdns.join(","))
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
    use ldap3::asn1::{StructureTag, PL};

    fn octets(bytes: &[u8]) -> StructureTag {
        StructureTag {
            class: ldap3::asn1::TagClass::Universal,
            id: 4,
            payload: PL::P(bytes.to_vec()),
        }
    }

    fn seq(id: u64, tags: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class: ldap3::asn1::TagClass::Application,
            id,
            payload: PL::C(tags),
        }
    }

    fn entry(dn: StructureTag, attributes: Vec<StructureTag>) -> ResultEntry {
        ResultEntry::new(seq(4, vec![dn, seq(16, attributes)]))
    }

    #[test]
    fn a_well_formed_entry_is_read_and_a_malformed_one_refused_without_a_panic() {
        let uid = seq(16, vec![octets(b"uid"), seq(17, vec![octets(b"anna")])]);
        let read = read_entry(entry(
            octets(b"uid=anna,dc=example,dc=dk"),
            vec![uid.clone()],
        ))
        .expect("a well-formed entry");
        assert_eq!(read.dn, "uid=anna,dc=example,dc=dk");
        assert_eq!(read.attrs["uid"], vec!["anna".to_owned()]);

        let malformed = [
            // A referral (AD's continuation reference) handed over as an entry.
            ResultEntry::new(seq(19, vec![octets(b"ldap://other.example.dk/")])),
            // The DN as a sequence, and as bytes that are not UTF-8.
            entry(seq(16, vec![]), vec![uid.clone()]),
            entry(octets(&[0xff, 0xfe]), vec![uid.clone()]),
            // No attribute list at all; an attribute without values; a value that is a sequence.
            ResultEntry::new(seq(4, vec![octets(b"uid=anna")])),
            entry(octets(b"uid=anna"), vec![seq(16, vec![octets(b"uid")])]),
            entry(
                octets(b"uid=anna"),
                vec![seq(
                    16,
                    vec![octets(b"uid"), seq(17, vec![seq(16, vec![])])],
                )],
            ),
            // The entry itself primitive.
            ResultEntry::new(StructureTag {
                class: ldap3::asn1::TagClass::Application,
                id: 4,
                payload: PL::P(b"junk".to_vec()),
            }),
        ];
        for (i, bad) in malformed.into_iter().enumerate() {
            assert!(read_entry(bad).is_none(), "malformed entry {i} was taken");
        }
    }

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
            groups: Default::default(),
            sync_interval_seconds: 0,
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
    fn two_spellings_of_one_dn_compare_equal_and_non_dns_are_refused() {
        let n = |dn: &str| normalize_dn(dn);
        assert_eq!(
            n("CN=Sesam Admins, OU=Groups,DC=kommune,DC=local"),
            n("cn=sesam admins,ou=groups , dc=kommune,dc=LOCAL")
        );
        assert_eq!(
            n("uid=dirk,ou=people,dc=sesam,dc=test").as_deref(),
            Some("uid=dirk,ou=people,dc=sesam,dc=test")
        );
        // Escapes: a comma inside a value, hex, a multi-valued RDN in either order.
        assert_eq!(n("cn=Hansen\\, Anna,dc=x"), n("cn=hansen\\2C anna,dc=x"));
        assert_ne!(n("cn=Hansen\\, Anna,dc=x"), n("cn=Hansen,cn=Anna,dc=x"));
        assert_eq!(n("cn=a+uid=b,dc=x"), n("UID=b + CN=a,dc=x"));
        assert_eq!(n("2.5.4.3=a,dc=x").as_deref(), Some("2.5.4.3=a,dc=x"));
        assert_eq!(n("cn=\\c3\\a6bler,dc=x"), n("cn=Æbler,dc=x"));
        for bad in [
            "",
            "admins",
            "cn=",
            "=x",
            "cn=a,,dc=x",
            "cn=a,",
            "cn=a\\",
            "cn=a\\q",
            "c n=a",
            "cn=\"a\"",
            "cn=a;dc=x",
            "1cn=a",
            "cn=a\0b",
        ] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn membership_decides_only_the_roles_with_a_group() {
        let members = Members(vec![
            (Role::Admin, [normalize_dn("uid=dirk,dc=x").unwrap()].into()),
            (Role::PasswordOnly, HashSet::new()),
        ]);
        assert_eq!(
            members.roles_of("UID=Dirk, DC=x"),
            DirectoryRoles {
                is_admin: Some(true),
                in_pilot: None,
                password_only: Some(false),
            }
        );
        assert_eq!(members.roles_of("uid=eve,dc=x").is_admin, Some(false));
    }

    #[test]
    fn the_service_password_is_not_shown() {
        let d = directory("(uid={username})");
        assert!(!format!("{:?}", d.config).contains("s3rvice"));
    }
}
