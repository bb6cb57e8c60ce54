//! fnmatch(3)-style globs: `*`, `?`, `[abc]`, `[a-z]`, `[!x]` and backslash
//! escapes, over characters. Small enough to own rather than pull in a
//! path-oriented glob crate: socket fields have no `/` to treat specially.

/// Whether `text` matches `pattern` as a whole.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    match_from(&pattern, &text)
}

/// Whether a value has glob metacharacters (and so is not a plain word).
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// Iterative matching with one backtrack point for the last `*`: linear in
/// practice, and no recursion for hostile patterns.
fn match_from(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&pattern[p..], text[t]) {
                        if matched {
                            p += next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == '[' {
                        // An unclosed `[` is a literal, as fnmatch(3) has it.
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                '\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((star_p, star_t)) => {
                p = star_p + 1;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches `c` against the bracket expression at the start of `pattern`.
/// Returns whether it matched and the expression's length, or `None` when
/// the bracket is never closed.
fn class(pattern: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let start = *pattern.get(i)?;
        if start == ']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&e| e != ']') {
            let end = pattern[i + 2];
            matched |= (start..=end).contains(&c);
            i += 3;
        } else {
            matched |= start == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("80", "80", true),
            ("80", "8080", false),
            ("80*", "8080", true),
            ("*80", "8080", true),
            ("8?8?", "8080", true),
            ("8?8?", "808", false),
            ("[0-9]*", "443", true),
            ("[!0-9]*", "443", false),
            ("[!0-9]*", "x", true),
            ("[]]", "]", true),
            ("[ab", "[ab", true),
            (r"\*", "*", true),
            (r"\*", "x", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("ng*x", "nginx", true),
            ("*.*.*.*", "127.0.0.1", true),
            ("fe80::*", "fe80::1", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} ~ {text:?}");
        }
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let pattern = "*a".repeat(50);
        let text = "a".repeat(60) + "b";
        assert!(!matches(&pattern, &text));
    }

    #[test]
    fn metacharacters() {
        assert!(is_glob("80*"));
        assert!(is_glob("[0-9]"));
        assert!(!is_glob("inet6"));
    }
}
