//! 24-hex ObjectId-like ids: 4 bytes of seconds, 5 random bytes fixed per
//! stand-in, a 3-byte counter — so sorting by id is sorting by creation.

use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;

#[derive(Debug)]
pub struct IdGen {
    process: [u8; 5],
    counter: AtomicU32,
}

impl Default for IdGen {
    fn default() -> Self {
        let mut rng = rand::thread_rng();
        Self {
            process: rng.r#gen(),
            counter: AtomicU32::new(rng.gen_range(0..0x0010_0000)),
        }
    }
}

impl IdGen {
    pub fn next(&self) -> String {
        let secs = chrono::Utc::now().timestamp().clamp(0, i64::from(u32::MAX));
        let secs = u32::try_from(secs).unwrap_or(u32::MAX);
        let count = self.counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let mut bytes = Vec::with_capacity(12);
        bytes.extend_from_slice(&secs.to_be_bytes());
        bytes.extend_from_slice(&self.process);
        bytes.extend_from_slice(&count.to_be_bytes()[1..]);
        hex::encode(bytes)
    }

    /// A 32-hex access key, like the Dashboard's.
    pub fn access_key(&self) -> String {
        hex::encode(rand::thread_rng().r#gen::<[u8; 16]>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_24_hex_and_increase() {
        let ids = IdGen::default();
        let a = ids.next();
        let b = ids.next();
        assert_eq!(a.len(), 24);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(a < b || b.ends_with("000000"), "{a} {b}");
        assert_eq!(ids.access_key().len(), 32);
    }
}
