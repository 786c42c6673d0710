//! Identifiers: machine ids (14 lowercase hex, as Fly's), generated names, API tokens.

use std::cell::Cell;
use std::io::Read;

/// `n` bytes from the kernel's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    bytes
}

/// Lower-case hex, two digits a byte, in one allocation (the backhaul signs every
/// relayed request with it: a `format!` a byte cost ~0.5 µs of allocations there).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}

/// The bytes a hex string (two digits a byte, either case) stands for.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A machine id: 14 lowercase hex digits.
pub fn machine_id() -> String {
    hex(&random_bytes::<7>())
}

/// An opaque app id.
pub fn app_id() -> String {
    hex(&random_bytes::<10>())
}

thread_local! {
    static FAST_RNG: Cell<u64> = Cell::new(u64::from_le_bytes(random_bytes::<8>()));
}

/// wyrand, seeded per thread from the kernel: cheap enough for every request, and good
/// for ids that must be unique, not secret (tokens use `random_bytes`).
fn fast_u64() -> u64 {
    FAST_RNG.with(|state| {
        let x = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    })
}

/// A ULID (26 characters, time-ordered), as Fly uses for instance ids, events and
/// request ids.
pub fn ulid() -> String {
    new_ulid().to_string()
}

/// A ULID, `-` and `suffix` (a request id and the edge that made it), in one
/// allocation: request ids are made on every request.
pub fn ulid_with(suffix: &str) -> String {
    let mut text = [0u8; ulid::ULID_LEN];
    let mut id = String::with_capacity(ulid::ULID_LEN + 1 + suffix.len());
    id.push_str(new_ulid().array_to_str(&mut text));
    id.push('-');
    id.push_str(suffix);
    id
}

fn new_ulid() -> ulid::Ulid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random = (u128::from(fast_u64()) << 64 | u128::from(fast_u64())) & ((1 << 80) - 1);
    ulid::Ulid::from_parts(millis, random)
}

/// A bearer token with 256 bits of randomness.
/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn api_token() -> String {
    hex(&random_bytes::<32>())
}

const ADJECTIVES: [&str; 64] = [
    "aged",
    "ancient",
    "bitter",
    "black",
    "blue",
    "broken",
    "calm",
    "cool",
    "crimson",
    "curly",
    "dark",
    "dawn",
    "delicate",
    "dry",
    "eager",
    "empty",
    "fancy",
    "floral",
    "frosty",
    "gentle",
    "green",
    "holy",
    "icy",
    "jolly",
    "late",
    "lingering",
    "little",
    "long",
    "lucky",
    "misty",
    "muddy",
    "nameless",
    "odd",
    "old",
    "orange",
    "plain",
    "polished",
    "purple",
    "quiet",
    "rapid",
    "restless",
    "rough",
    "round",
    "shiny",
    "shy",
    "silent",
    "snowy",
    "soft",
    "sparkling",
    "spring",
    "square",
    "still",
    "summer",
    "super",
    "throbbing",
    "tight",
    "tiny",
    "wandering",
    "weathered",
    "wild",
    "winter",
    "wispy",
    "yellow",
    "young",
];
const NOUNS: [&str; 64] = [
    "art",
    "band",
    "base",
    "bird",
    "boat",
    "bonus",
    "breeze",
    "brook",
    "butterfly",
    "cake",
    "cherry",
    "cloud",
    "darkness",
    "dawn",
    "disk",
    "dream",
    "feather",
    "field",
    "firefly",
    "flower",
    "forest",
    "frog",
    "glade",
    "glitter",
    "hall",
    "hat",
    "heart",
    "hill",
    "lab",
    "lake",
    "limit",
    "meadow",
    "mode",
    "moon",
    "mountain",
    "mouse",
    "night",
    "paper",
    "poetry",
    "pond",
    "rain",
    "recipe",
    "rice",
    "river",
    "sea",
    "shape",
    "silence",
    "smoke",
    "snow",
    "sound",
    "star",
    "sun",
    "sunset",
    "surf",
    "thunder",
    "tooth",
    "truth",
    "union",
    "violet",
    "voice",
    "waterfall",
    "wave",
    "wind",
    "wood",
];

/// Generated names end in a number below this (four digits, as Fly's).
const NAME_NUMBERS: u64 = 10_000;

/// A name like Fly's generated ones: `aged-wind-2649`, one of 64 × 64 × 10,000 (about
/// 41 million, so a collision is rare even in a large app; the registry tries again).
pub fn machine_name() -> String {
    let draw = fast_u64();
    // Two 6-bit indexes (64 words each: no bias), then the number from the rest.
    let adjective = ADJECTIVES[(draw & 63) as usize];
    let noun = NOUNS[((draw >> 6) & 63) as usize];
    let number = (draw >> 12) % NAME_NUMBERS;
    format!("{adjective}-{noun}-{number}")
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

    /// A request id is a ULID and the edge's region, and does not repeat.
    #[test]
    fn request_ids_are_a_ulid_and_the_edge() {
        let id = ulid_with("ams");
        let (ulid, edge) = id.split_once('-').unwrap();
        assert_eq!(edge, "ams");
        assert!(ulid::Ulid::from_string(ulid).is_ok(), "{id}");
        assert_ne!(ulid_with("ams"), id);
    }

    /// ULIDs are 26 characters and do not repeat.
    #[test]
    fn ulids_are_unique() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| ulid()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 26));
    }

    /// Generated names have three dash-separated parts ending in a number.
    #[test]
    fn names_are_adjective_noun_number() {
        let name = machine_name();
        let parts: Vec<_> = name.split('-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert!(parts[2].parse::<u16>().is_ok(), "{name}");
    }

    /// Hex is two lower-case digits a byte, and reads back to the same bytes.
    #[test]
    fn hex_reads_back() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff, 0x10];
        assert_eq!(hex(&bytes), "000fa5ff10");
        assert_eq!(from_hex(&hex(&bytes)).as_deref(), Some(&bytes[..]));
    }
}
