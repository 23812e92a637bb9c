//! The comparison key for names people type: `userName`, group
//! `displayName` and e-mail addresses. Two values with the same key are the
//! same name (look-alikes such as `José` in NFC and in NFD, full-width
//! `ｊｏｓｅ` and `jose`, `Straße` and `STRASSE`), so the key is what the
//! uniqueness indexes and every join into Tyk compare; the value itself is
//! stored as sent.
//!
//! The key is Unicode *compatibility caseless matching* (The Unicode
//! Standard, §3.13, definition D146):
//! `NFKD(toCasefold(NFKD(toCasefold(NFD(X)))))`, brought back to composed
//! form with NFKC so keys (and the e-mail logins Tyk receives) are the short
//! composed spelling. NFKC of an NFKD string is a bijection, so two keys are
//! equal exactly when D146 says the strings match. The repeated fold and
//! decomposition are what D146 needs for the few characters where a single
//! `NFKC(casefold(x))` is not stable (e.g. U+0345 COMBINING GREEK
//! YPOGEGRAMMENI, or compatibility characters that decompose to capitals
//! such as U+2122 ™, U+3392 ㎒); the result is idempotent,
//! `fold_key(fold_key(x)) == fold_key(x)`, which the tests check.
//!
//! Case folding is full and locale-independent (ICU4X `CaseMapper`, the
//! Unicode `CaseFolding.txt` C+F mappings, no Turkic special case); the
//! normalisation is ICU4X's. Both are pure functions of the Unicode version
//! the crates ship, so a crate upgrade that changes the Unicode version is
//! followed by the re-key step in `store::migrate`.

use icu_casemap::CaseMapper;
use icu_normalizer::{ComposingNormalizerBorrowed, DecomposingNormalizerBorrowed};

/// The comparison key of `s`: see the module documentation.
pub fn fold_key(s: &str) -> String {
    // ASCII is its own NFD and NFKD, and its full case folding is ASCII
    // lower case: the common case costs one pass (the planner folds every
    // e-mail of every plan).
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    fold_key_unicode(s)
}

fn fold_key_unicode(s: &str) -> String {
    let fold = CaseMapper::new();
    let nfd = DecomposingNormalizerBorrowed::new_nfd();
    let nfkd = DecomposingNormalizerBorrowed::new_nfkd();
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let first = fold.fold_string(&nfd.normalize(s)).into_owned();
    let second = fold.fold_string(&nfkd.normalize(&first)).into_owned();
    nfkc.normalize(&second).into_owned()
}

/// Whether two values are the same name (equal keys).
pub fn same_key(a: &str, b: &str) -> bool {
    a == b || fold_key(a) == fold_key(b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn look_alikes_share_a_key() {
        let nfc = "Jos\u{e9}";
        let nfd = "Jose\u{301}";
        assert_ne!(nfc, nfd);
        assert_eq!(fold_key(nfc), fold_key(nfd));
        assert_eq!(fold_key(nfc), "jos\u{e9}", "the key is composed");
        assert_eq!(fold_key("ｊｏｓｅ"), "jose");
        assert_eq!(fold_key("JOSE"), "jose");
        assert_eq!(fold_key("Straße"), fold_key("STRASSE"));
        assert_eq!(fold_key("Straße"), "strasse");
        assert_eq!(fold_key("ẞ"), "ss");
        // Kelvin and Ohm signs, ligatures, Greek final sigma.
        assert_eq!(fold_key("\u{212a}"), "k");
        assert_eq!(fold_key("\u{2126}"), "\u{3c9}");
        assert_eq!(fold_key("ﬁle"), "file");
        assert_eq!(fold_key("ΟΔΟΣ"), fold_key("οδος"));
    }

    #[test]
    fn different_names_keep_different_keys() {
        assert_ne!(fold_key("jose"), fold_key("josé"));
        assert_ne!(fold_key("a.b"), fold_key("ab"));
        assert_ne!(fold_key("ı"), fold_key("i"), "no Turkic special case");
        assert!(!same_key("jose", "jos"));
        assert!(same_key("JOSÉ@x.io", "Jose\u{301}@X.IO"));
    }

    #[test]
    fn keys_of_unstable_single_passes_are_idempotent() {
        for s in [
            "\u{345}",
            "\u{1fb3}\u{345}",
            "\u{390}",
            "\u{1e9e}",
            "\u{2122}",
            "\u{3392}",
            "\u{1f88}",
            "\u{ab70}",
            "\u{13f8}",
            "İstanbul",
            "\u{fb03}",
            "\u{24b6}",
            "\u{1d400}",
        ] {
            let once = fold_key(s);
            assert_eq!(fold_key(&once), once, "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn fold_key_is_idempotent(s in "\\PC{0,12}") {
            let once = fold_key(&s);
            prop_assert_eq!(fold_key(&once), once);
        }

        #[test]
        fn the_ascii_shortcut_is_the_full_key(s in "[ -~]{0,24}") {
            prop_assert_eq!(fold_key(&s), fold_key_unicode(&s));
        }
    }
}
