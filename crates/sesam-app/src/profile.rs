//! The app's saved state: the device key and what Sesam said at enrolment.
//! Stored as a JSON file readable only by its owner (0600 on unix), written atomically.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ClientError;
use crate::proof::public_jwk;

/// A device key plus the server, device id and username it was enrolled as.
#[derive(Clone)]
pub struct Profile {
    /// Base URL of Sesam, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The device id Sesam gave at enrolment (the proof's `kid`).
    pub device_id: String,
    /// The user the device belongs to.
    pub username: String,
    key: SigningKey,
}

/// The file form: the private key as PKCS#8 PEM, the public key as a JWK for people to read.
#[derive(Serialize, Deserialize)]
struct ProfileFile {
    server: String,
    device_id: String,
    username: String,
    private_key: String,
    public_jwk: Value,
}

impl Profile {
    pub fn new(server: &str, device_id: &str, username: &str, key: SigningKey) -> Profile {
        Profile {
            server: server.trim_end_matches('/').to_owned(),
            device_id: device_id.to_owned(),
            username: username.to_owned(),
            key,
        }
    }

    /// The device's private key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The device's public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    /// The device's public key as a JWK.
    pub fn public_jwk(&self) -> Value {
        public_jwk(self.key.verifying_key())
    }

    /// Reads a profile written by [`Profile::save`].
    pub fn load(path: &Path) -> Result<Profile, ClientError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| profile_error(path, &format!("cannot read: {e}")))?;
        let file: ProfileFile = serde_json::from_str(&text)
            .map_err(|e| profile_error(path, &format!("not a sesam-app profile: {e}")))?;
        let key = SigningKey::from_pkcs8_pem(&file.private_key)
            .map_err(|e| profile_error(path, &format!("bad private key: {e}")))?;
        if public_jwk(key.verifying_key()) != file.public_jwk {
            return Err(profile_error(
                path,
                "public_jwk does not belong to private_key",
            ));
        }
        Ok(Profile::new(
            &file.server,
            &file.device_id,
            &file.username,
            key,
        ))
    }

    /// Writes the profile, readable by its owner only, replacing any older file atomically.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| profile_error(path, &format!("cannot encode the key: {e}")))?;
        let file = ProfileFile {
            server: self.server.clone(),
            device_id: self.device_id.clone(),
            username: self.username.clone(),
            private_key: pem.to_string(),
            public_jwk: self.public_jwk(),
        };
        let mut json = serde_json::to_vec_pretty(&file)
            .map_err(|e| profile_error(path, &format!("cannot encode: {e}")))?;
        json.push(b'\n');
        let tmp = temp_path(path);
        write_private(&tmp, &json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                profile_error(path, &format!("cannot write: {e}"))
            })
    }
}

impl fmt::Debug for Profile {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("server", &self.server)
            .field("device_id", &self.device_id)
            .field("username", &self.username)
            .field("public_jwk", &self.public_jwk())
            .finish_non_exhaustive()
    }
}

fn profile_error(path: &Path, what: &str) -> ClientError {
    ClientError::Profile(format!("{}: {what}", path.display()))
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Creates `path` so that only its owner can ever read it (the mode is set at creation, so
/// the key is never on disk with wider permissions).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // A leftover file keeps its old mode on open; make sure it is ours alone.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::tests::verify;
    use crate::proof::{device_header, sign_proof, ProofClaims};

    fn profile() -> Profile {
        Profile::new(
            "http://127.0.0.1:8080/",
            "dev-1",
            "anna",
            SigningKey::random(&mut rand::rngs::OsRng),
        )
    }

    #[test]
    fn profile_round_trips_and_the_key_survives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sesam-app.json");
        let original = profile();
        assert_eq!(original.server, "http://127.0.0.1:8080");
        original.save(&path).unwrap();
        let loaded = Profile::load(&path).unwrap();
        assert_eq!(loaded.server, original.server);
        assert_eq!(loaded.device_id, "dev-1");
        assert_eq!(loaded.username, "anna");
        assert_eq!(loaded.public_jwk(), original.public_jwk());
        let claims = ProofClaims::now("GET", "/api/app/v1/devices/self", b"");
        let jws = sign_proof(
            loaded.signing_key(),
            &device_header(&loaded.device_id),
            &claims,
        );
        verify(&jws, original.verifying_key()).unwrap();
        // Saving again over the old file works and leaves no temporary file behind.
        loaded.save(&path).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn profile_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        profile().save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let p = profile();
        let debug = format!("{p:?}");
        assert!(debug.contains("dev-1"));
        assert!(!debug.contains("PRIVATE"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        p.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("BEGIN PRIVATE KEY"));
    }

    #[test]
    fn broken_or_mismatched_profiles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        assert!(matches!(Profile::load(&path), Err(ClientError::Profile(_))));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(Profile::load(&path), Err(ClientError::Profile(_))));
        profile().save(&path).unwrap();
        let mut file: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        file["public_jwk"] = profile().public_jwk();
        std::fs::write(&path, file.to_string()).unwrap();
        let err = Profile::load(&path).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }
}
