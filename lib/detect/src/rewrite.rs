//! Rule rewrites applied before compilation, where rsigma 0.23 departs from the Sigma
//! specification (each is covered by a test in `tests/semantics.rs`):
//!
//! - `base64offset`: rsigma keeps the last base64 character of each offset variant, which
//!   depends on the byte *after* the value, so a value inside a longer payload is missed at some
//!   offsets (a real `-EncodedCommand` goes unseen). Vigie computes the variants as pySigma
//!   does (dropping the characters that depend on neighbouring bytes) and matches them as
//!   case-sensitive substrings.
//! - `'|all'` on keywords: rsigma compares each keyword for equality with a whole string; the
//!   specification asks that every keyword appear in the event. Vigie turns the item into one
//!   keyword detection per value, all required.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rsigma_parser::{Detection, DetectionItem, Modifier, SigmaRule, SigmaString, SigmaValue};

/// Applies every rewrite to `rule`'s detections.
pub fn rewrite(rule: &mut SigmaRule) {
    for detection in rule.detection.named.values_mut() {
        rewrite_detection(detection);
    }
}

fn rewrite_detection(detection: &mut Detection) {
    match detection {
        Detection::AllOf(items) => {
            let keyword_all = items.len() == 1
                && items[0].field.name.is_none()
                && items[0].field.modifiers == [Modifier::All];
            if keyword_all {
                let values = std::mem::take(&mut items[0].values);
                *detection = Detection::And(
                    values
                        .into_iter()
                        .map(|v| Detection::Keywords(vec![v]))
                        .collect(),
                );
                return;
            }
            items.iter_mut().for_each(rewrite_base64offset);
        }
        Detection::AnyOf(subs) | Detection::And(subs) => {
            subs.iter_mut().for_each(rewrite_detection);
        }
        Detection::ArrayMatch { body, .. } => rewrite_detection(body),
        Detection::Conditional { named, .. } => named.values_mut().for_each(rewrite_detection),
        Detection::Keywords(_) => {}
    }
}

fn rewrite_base64offset(item: &mut DetectionItem) {
    let mods = &item.field.modifiers;
    if !mods.contains(&Modifier::Base64Offset) {
        return;
    }
    let encode: fn(&str) -> Vec<u8> = if mods.contains(&Modifier::Wide) {
        |s| s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    } else if mods.contains(&Modifier::Utf16be) {
        |s| s.encode_utf16().flat_map(u16::to_be_bytes).collect()
    } else if mods.contains(&Modifier::Utf16) {
        |s| {
            let mut out = vec![0xff, 0xfe];
            out.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
            out
        }
    } else {
        |s| s.as_bytes().to_vec()
    };
    let mut values = Vec::new();
    for value in &item.values {
        let SigmaValue::String(s) = value else {
            return; // not a plain string: leave the item to the engine
        };
        for pattern in offset_variants(&encode(&s.original)) {
            values.push(SigmaValue::String(SigmaString::new(&escape(&pattern))));
        }
    }
    item.values = values;
    item.field.modifiers = vec![Modifier::Contains, Modifier::Cased];
}

/// The three base64 forms of `value` at byte offsets 0, 1 and 2 of a longer payload, each cut
/// to the characters that depend on `value` alone (pySigma's algorithm).
fn offset_variants(value: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    let mut out = Vec::new();
    for shift in 0..3 {
        let mut bytes = vec![b' '; shift];
        bytes.extend_from_slice(value);
        let encoded = STANDARD.encode(&bytes);
        let trim = END_TRIM[(value.len() + shift) % 3];
        let end = encoded.len().saturating_sub(trim);
        if let Some(p) = encoded.get(START[shift]..end) {
            if !p.is_empty() {
                out.push(p.to_owned());
            }
        }
    }
    out
}

/// Base64 has no `*`, `?` or `\`, but a value is parsed for wildcards: keep it literal anyway.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('*', "\\*")
        .replace('?', "\\?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_match_pysigma() {
        // pySigma: SigmaBase64OffsetModifier on "/bin/bash"
        assert_eq!(
            offset_variants(b"/bin/bash"),
            vec!["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]
        );
    }
}
