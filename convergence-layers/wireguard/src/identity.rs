//! The node's identity: an Ed25519 key pair, the WireGuard (X25519) key derived from it, and the printable
//! name and tunnel address of a peer's public key.
//!
//! The X25519 static key is *derived* from the Ed25519 key by the standard conversion (the one of libsodium's
//! `crypto_sign_ed25519_sk_to_curve25519`): the X25519 secret is the first half of SHA-512 of the Ed25519
//! seed (X25519 clamps it, exactly as Ed25519 does), the public key is the Edwards→Montgomery image of the
//! Ed25519 public key. A peer that knows a node's identity key therefore knows its WireGuard key with no
//! certificate to fetch, store or check; see docs/wireguard.md for why this rather than a separate signed key.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::Ipv6Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use data_encoding::{Encoding, Specification};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};

use crate::error::IdentityError;

/// The first line of an identity file; the second is the 32-byte Ed25519 seed in lowercase hex.
const FILE_HEADER: &str = "dtn-wg identity v1 (ed25519 secret seed, hex; keep private)";
/// Domain separation for the tunnel address hash.
const ADDR_CONTEXT: &[u8] = b"dtn-wg tunnel address v1";

/// A node's Ed25519 identity key pair.
pub struct Identity {
    signing: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public", &self.public()).finish_non_exhaustive()
    }
}

impl Identity {
    /// A new random identity (from the operating system's CSPRNG).
    pub fn generate() -> Result<Identity, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
        Ok(Identity::from_seed(&seed))
    }

    /// The identity of a 32-byte Ed25519 secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        Identity { signing: SigningKey::from_bytes(seed) }
    }

    /// Loads the identity stored at `path`, or generates one and stores it there (mode 0600) if the file does
    /// not exist. A file that group or others may read is refused: the key may have leaked.
    pub fn load_or_generate(path: &Path) -> Result<Identity, IdentityError> {
        match Identity::load(path) {
            Err(IdentityError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity::generate()?;
                id.store(path)?;
                Ok(id)
            }
            r => r,
        }
    }

    /// Loads an identity file, refusing one that is readable by anyone but its owner.
    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let meta = fs::metadata(path)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions { path: path.to_owned(), mode });
        }
        let text = fs::read_to_string(path)?;
        let mut lines = text.lines();
        if lines.next() != Some(FILE_HEADER) {
            return Err(IdentityError::Format { path: path.to_owned(), why: "missing header line" });
        }
        let hex = lines.next().unwrap_or("").trim();
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(hex.as_bytes())
            .map_err(|_| IdentityError::Format { path: path.to_owned(), why: "seed is not hex" })?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| IdentityError::Format { path: path.to_owned(), why: "seed is not 32 bytes" })?;
        Ok(Identity::from_seed(&seed))
    }

    /// Writes the identity to a new file with mode 0600 (never over an existing one), synced to disk.
    pub fn store(&self, path: &Path) -> Result<(), IdentityError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        let text = format!("{FILE_HEADER}\n{}\n", data_encoding::HEXLOWER.encode(self.signing.as_bytes()));
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        // The umask cannot widen 0600, but a pre-set default ACL could: say so rather than trust it.
        let mode = f.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions { path: path.to_owned(), mode });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// The Ed25519 signing key (for BEP 44 rendezvous records and anything else the node signs).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public key that names this node.
    pub fn public(&self) -> PeerKey {
        PeerKey(self.signing.verifying_key().to_bytes())
    }

    /// The WireGuard static secret: the X25519 secret of the standard Ed25519→X25519 conversion.
    pub fn x25519_secret(&self) -> boringtun::x25519::StaticSecret {
        boringtun::x25519::StaticSecret::from(self.signing.to_scalar_bytes())
    }
}

/// A node's identity public key (Ed25519): how peers are named and configured.
///
/// Printed as 52 characters of z-base-32 (the form pkarr and other Mainline-DHT users print Ed25519 keys in):
/// short enough for a config file, no padding, no characters that need quoting.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKey([u8; 32]);

fn zbase32() -> Encoding {
    let mut spec = Specification::new();
    spec.symbols.push_str("ybndrfg8ejkmcpqxot1uwisza345h769");
    // A 256-bit key leaves 4 unused bits in the last character; insisting they are zero keeps one
    // spelling per key.
    spec.check_trailing_bits = true;
    spec.encoding().expect("the z-base-32 specification is valid")
}

impl PeerKey {
    /// The key of 32 bytes, if they are a valid Ed25519 public key.
    pub fn from_bytes(b: &[u8; 32]) -> Result<PeerKey, IdentityError> {
        VerifyingKey::from_bytes(b).map(|_| PeerKey(*b)).map_err(|_| IdentityError::BadKey("not an Ed25519 public key"))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        // Checked when the key was made; kept as bytes so that the key stays small and cheap to hash.
        VerifyingKey::from_bytes(&self.0).expect("a PeerKey holds a valid Ed25519 public key")
    }

    /// The peer's WireGuard static public key (Edwards→Montgomery image of the identity key).
    pub fn x25519_public(&self) -> boringtun::x25519::PublicKey {
        boringtun::x25519::PublicKey::from(self.verifying_key().to_montgomery().to_bytes())
    }

    /// The identity keys whose WireGuard key is `x25519`: the Montgomery form keeps no sign of the
    /// Edwards x coordinate, so a WireGuard key names two Ed25519 keys (a point and its negation). A
    /// handshake from a peer we were not configured with reveals only its WireGuard key; which of the two
    /// it holds shows in the source address of its first packet (see `tunnel_addr`).
    pub fn candidates(x25519: &[u8; 32]) -> Vec<PeerKey> {
        let u = curve25519_dalek::montgomery::MontgomeryPoint(*x25519);
        let mut out: Vec<PeerKey> = Vec::with_capacity(2);
        for sign in [0u8, 1] {
            let Some(p) = u.to_edwards(sign) else { continue };
            if let Ok(k) = PeerKey::from_bytes(&p.compress().to_bytes())
                && !out.contains(&k)
            {
                out.push(k);
            }
        }
        out
    }

    /// The peer's address inside the tunnel: `fd` followed by the first 120 bits of
    /// SHA-512("dtn-wg tunnel address v1" ‖ key), an IPv6 unique local address (RFC 4193) that only its key
    /// can hold, since every decrypted packet's source is checked against the peer it came from.
    pub fn tunnel_addr(&self) -> Ipv6Addr {
        let h = Sha512::new().chain_update(ADDR_CONTEXT).chain_update(self.as_bytes()).finalize();
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[1..].copy_from_slice(&h[..15]);
        Ipv6Addr::from(a)
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&zbase32().encode(self.as_bytes()))
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({self})")
    }
}

impl FromStr for PeerKey {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<PeerKey, IdentityError> {
        if s.len() != 52 {
            return Err(IdentityError::BadKey("a key is 52 characters of z-base-32"));
        }
        let bytes = zbase32().decode(s.as_bytes()).map_err(|_| IdentityError::BadKey("not z-base-32"))?;
        let b: [u8; 32] = bytes.try_into().map_err(|_| IdentityError::BadKey("not 32 bytes"))?;
        PeerKey::from_bytes(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x25519_key_is_the_standard_conversion() {
        for seed in [[0u8; 32], [7u8; 32], *b"a seed that is exactly 32 bytes!"] {
            let id = Identity::from_seed(&seed);
            // The secret's own public key equals the Montgomery image of the identity key, so a peer can
            // compute our WireGuard key from our name alone.
            let from_secret = boringtun::x25519::PublicKey::from(&id.x25519_secret());
            assert_eq!(from_secret.as_bytes(), id.public().x25519_public().as_bytes());
        }
    }

    #[test]
    fn zbase32_matches_the_specification() {
        // The example of the z-base-32 specification: bits 111100001011111111000111.
        let mut spec = Specification::new();
        spec.symbols.push_str("ybndrfg8ejkmcpqxot1uwisza345h769");
        spec.check_trailing_bits = false;
        assert_eq!(spec.encoding().unwrap().encode(&[0xf0, 0xbf, 0xc7]), "6n9hq");
    }

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        let k = Identity::from_seed(&[3u8; 32]).public();
        let s = k.to_string();
        assert_eq!(s.len(), 52);
        assert_eq!(s.parse::<PeerKey>().unwrap(), k);
        assert!("short".parse::<PeerKey>().is_err());
        assert!("l".repeat(52).parse::<PeerKey>().is_err()); // 'l' is not in the alphabet
        let mut other = s.clone();
        other.replace_range(51.., "9"); // non-zero trailing bits
        assert!(other.parse::<PeerKey>().is_err());
    }

    #[test]
    fn a_wireguard_key_names_two_identities_one_of_them_the_holder() {
        for seed in 0u8..8 {
            let k = Identity::from_seed(&[seed; 32]).public();
            let c = PeerKey::candidates(k.x25519_public().as_bytes());
            assert_eq!(c.len(), 2, "seed {seed}");
            assert!(c.contains(&k), "seed {seed}");
            // Both have the same WireGuard key but different tunnel addresses, which is what tells them apart.
            assert_eq!(c[0].x25519_public().as_bytes(), c[1].x25519_public().as_bytes());
            assert_ne!(c[0].tunnel_addr(), c[1].tunnel_addr());
        }
    }

    #[test]
    fn tunnel_addresses_are_unique_local_and_distinct() {
        let a = Identity::from_seed(&[1u8; 32]).public().tunnel_addr();
        let b = Identity::from_seed(&[2u8; 32]).public().tunnel_addr();
        assert_eq!(a.octets()[0], 0xfd);
        assert_ne!(a, b);
    }
}
