//! Identifiers: machine ids (14 lowercase hex, as Fly's), generated names, API tokens.

use std::io::Read;

/// `n` bytes from the kernel's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    bytes
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A machine id: 14 lowercase hex digits.
pub fn machine_id() -> String {
    hex(&random_bytes::<7>())
}

/// An opaque app id.
pub fn app_id() -> String {
    hex(&random_bytes::<10>())
}

/// A ULID (26 characters, time-ordered), as Fly uses for instance ids and events.
pub fn ulid() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&random_bytes::<10>());
    ulid::Ulid::from_parts(millis, u128::from_be_bytes(random)).to_string()
}

/// A bearer token with 256 bits of randomness.
pub fn api_token() -> String {
    hex(&random_bytes::<32>())
}

const ADJECTIVES: &[&str] = &[
    "aged",
    "bold",
    "calm",
    "damp",
    "eager",
    "fancy",
    "gentle",
    "hidden",
    "icy",
    "jolly",
    "keen",
    "lively",
    "misty",
    "nameless",
    "odd",
    "proud",
    "quiet",
    "rough",
    "shy",
    "tiny",
    "weathered",
];
const NOUNS: &[&str] = &[
    "wind", "river", "meadow", "forest", "sun", "leaf", "moon", "field", "brook", "cloud", "dawn",
    "flower", "frost", "glade", "lake", "night", "pond", "rain", "sea", "snow", "star", "wave",
];

/// A name like Fly's generated ones: `aged-wind-2649`.
pub fn machine_name() -> String {
    let [a, n, x, y] = random_bytes::<4>();
    let number = u16::from_le_bytes([x, y]) % 10_000;
    format!(
        "{}-{}-{number}",
        ADJECTIVES[a as usize % ADJECTIVES.len()],
        NOUNS[n as usize % NOUNS.len()]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Machine ids are 14 lowercase hex digits and differ between calls.
    #[test]
    fn machine_ids_look_like_flys() {
        let id = machine_id();
        assert_eq!(id.len(), 14);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(id, machine_id());
    }

    /// Generated names have three dash-separated parts ending in a number.
    #[test]
    fn names_are_adjective_noun_number() {
        let name = machine_name();
        let parts: Vec<_> = name.split('-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert!(parts[2].parse::<u16>().is_ok(), "{name}");
    }
}
