//! The tokenisers the metrics are defined over, reimplemented from their documented behaviour:
//! rouge-score's default tokenizer (lowercase, keep ASCII `[a-z0-9]` runs) and sacreBLEU's
//! `13a` tokenizer (the mteval-v13a.pl rules WMT uses), plus the Python `str.split()` notion
//! of whitespace both packages (and chrF) rely on. Python strings are sequences of code points,
//! so everything here works on `char`s.

use std::collections::HashMap;
use std::hash::Hash;

/// Python's `str.isspace()`, which `str.split()` and `str.rstrip()` use: Unicode White_Space
/// plus U+001C..U+001F (information separators), which Rust's `char::is_whitespace` omits.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()` with no argument.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

/// rouge-score's default tokenizer without stemming: `text.lower()`, every run of characters
/// outside `[a-z0-9]` becomes a space, split. Non-ASCII letters are therefore dropped and split
/// words ("système" -> "syst", "me"); the only non-ASCII characters that survive are the two
/// whose lowercase is ASCII: U+0130 'İ' -> "i" + U+0307 (so "i" then a break) and U+212A
/// KELVIN SIGN -> "k".
pub(crate) fn rouge_tokens(text: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        // Final-sigma context in str.lower() only changes non-ASCII output, which is dropped.
        for l in c.to_lowercase() {
            cleaned.push(if l.is_ascii_lowercase() || l.is_ascii_digit() { l } else { ' ' });
        }
    }
    cleaned.split_ascii_whitespace().map(str::to_owned).collect()
}

/// The characters 13a's first rule surrounds with spaces: ASCII punctuation and symbols except
/// `'`, `,`, `-` and `.` (those get the context-dependent rules), plus the space itself.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, ' '..='&' | '('..='+' | '/' | ':'..='@' | '['..='`' | '{'..='~')
}

/// One pass of a Python `re.sub` whose pattern is two single-character classes: matches are
/// found left to right and do not overlap, so the second character of a match is never the
/// first of the next one ("a.." splits only the first period in this pass).
fn sub_pairs(
    s: &[char],
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    emit: impl Fn(char, char, &mut Vec<char>),
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 4 + 4);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && first(s[i]) && second(s[i + 1]) {
            emit(s[i], s[i + 1], &mut out);
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_period_or_comma(c: char) -> bool {
    c == '.' || c == ','
}

/// sacreBLEU's default BLEU preprocessing: `rstrip()` (Python whitespace), then tokenizer 13a:
/// drop `<skipped>` and `-\n`, newlines to spaces, unescape four HTML entities (in the order
/// &quot; &amp; &lt; &gt;, one pass each, so "&amp;quot;" ends as "&quot;" but "&amp;lt;" as
/// "<"), then the regex rules: symbols apart, period/comma apart unless preceded by a digit,
/// period/comma apart unless followed by a digit, dash apart after a digit.
pub(crate) fn tokenize_13a(line: &str) -> Vec<String> {
    let line = line.trim_end_matches(is_py_space);
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }

    let mut chars = Vec::with_capacity(line.len() * 2 + 2);
    chars.push(' ');
    for c in line.chars() {
        if is_13a_symbol(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    chars.push(' ');

    let chars = sub_pairs(
        &chars,
        |c| !is_digit(c),
        is_period_or_comma,
        |a, b, out| out.extend([a, ' ', b, ' ']),
    );
    let chars = sub_pairs(
        &chars,
        is_period_or_comma,
        |c| !is_digit(c),
        |a, b, out| out.extend([' ', a, ' ', b]),
    );
    let chars = sub_pairs(&chars, is_digit, |c| c == '-', |a, b, out| out.extend([a, ' ', b, ' ']));

    let text: String = chars.into_iter().collect();
    py_split(&text).map(str::to_owned).collect()
}

/// Counts of the n-grams of `items` (slices borrowed from it), as Python's
/// `Counter(tuple(items[i:i+n]) for i in range(len(items) - n + 1))`.
pub(crate) fn ngram_counts<T: Eq + Hash>(items: &[T], n: usize) -> HashMap<&[T], usize> {
    let mut counts = HashMap::new();
    if n > 0 && items.len() >= n {
        for gram in items.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// The number of n-grams of a sequence of `len` items.
pub(crate) fn ngram_total(len: usize, n: usize) -> usize {
    (len + 1).saturating_sub(n)
}

/// The clipped match count: for each n-gram of the hypothesis, the smaller of its counts in
/// the hypothesis and the reference, summed.
pub(crate) fn clipped_matches<T: Eq + Hash>(
    hyp: &HashMap<&[T], usize>,
    reference: &HashMap<&[T], usize>,
) -> usize {
    hyp.iter().map(|(gram, &count)| count.min(reference.get(gram).copied().unwrap_or(0))).sum()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;
    use super::*;

    fn joined(tokens: Vec<String>) -> String {
        tokens.join(" ")
    }

    // Expected strings are sacreBLEU 2.6.0's output for the same inputs.
    #[test]
    fn tokenizer_13a_corner_cases() {
        assert_eq!(joined(tokenize_13a("a..b")), "a . . b");
        assert_eq!(joined(tokenize_13a("x.,y")), "x . , y");
        assert_eq!(joined(tokenize_13a("3.5, 4,000 and 5-6 - 7.")), "3.5 , 4,000 and 5 - 6 - 7 .");
        assert_eq!(joined(tokenize_13a("&amp;quot; &amp;lt; &lt;x&gt;")), "& quot ; < < x >");
        assert_eq!(joined(tokenize_13a("U.S.A.")), "U . S . A .");
        assert_eq!(
            joined(tokenize_13a("(hi) \"q\" l'homme 1-2-3")),
            "( hi ) \" q \" l'homme 1 - 2 - 3"
        );
        assert_eq!(joined(tokenize_13a("a<skipped>b")), "ab");
        assert_eq!(joined(tokenize_13a("a-\nb")), "ab");
        assert!(tokenize_13a(" \u{1c}\t").is_empty());
    }

    // Expected tokens are rouge-score 0.1.2's output for the same inputs.
    #[test]
    fn rouge_tokenizer_drops_non_ascii() {
        assert_eq!(
            rouge_tokens("système de surveillance d’hôtes"),
            ["syst", "me", "de", "surveillance", "d", "h", "tes"]
        );
        assert_eq!(rouge_tokens("İstanbul 3\u{212a}"), ["i", "stanbul", "3k"]);
        assert_eq!(rouge_tokens("ÉCOLE élève"), ["cole", "l", "ve"]);
        assert!(rouge_tokens("٣ ½ ²").is_empty());
        assert_eq!(rouge_tokens("x\u{1c}y"), ["x", "y"]);
    }
}
