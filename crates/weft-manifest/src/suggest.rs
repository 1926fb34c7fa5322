//! "Did you mean ...?": edit distance over the names known at one level.

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions, each substring
/// edited at most once) between `a` and `b`, counted in `char`s.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    if n == 0 {
        return m;
    }
    if m == 0 {
        return n;
    }
    // Three rows: i-2, i-1, i.
    let mut prev2: Vec<usize> = vec![0; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur: Vec<usize> = vec![0; m + 1];
    for i in 1..=n {
        cur[0] = i;
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[m]
}

/// Lower-cases and drops `_`, `-` and spaces, so `pool_size`, `pool-size` and `PoolSize` all
/// compare equal to `poolSize`.
fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The largest distance still worth suggesting for an input of `len` characters.
fn budget(len: usize) -> usize {
    match len {
        0..=3 => 1,
        4..=6 => 2,
        n => n / 3,
    }
}

/// The known name closest to `input`, if one is close enough to be a likely typo.
///
/// A name equal to `input` up to case, `_` and `-` wins outright (`pool_size` -> `poolSize`).
/// Otherwise the candidate with the smallest [`edit_distance`] within a budget that grows with
/// the input's length (1 for up to 3 characters, 2 up to 6, then a third of the length); ties go
/// to the earlier candidate. Returns `None` when `input` is itself a candidate.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if candidates.contains(&input) {
        return None;
    }
    let folded = fold(input);
    if !folded.is_empty()
        && let Some(c) = candidates.iter().find(|c| fold(c) == folded)
    {
        return Some(c);
    }
    let limit = budget(input.chars().count());
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = edit_distance(&input.to_lowercase(), &c.to_lowercase());
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("imag", "image"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("ca", "abc"), 3); // OSA, not unrestricted Damerau
        assert_eq!(edit_distance("naem", "name"), 1);
        assert_eq!(edit_distance("héllo", "hello"), 1);
    }

    #[test]
    fn suggestions() {
        let fields = ["name", "image", "digest", "poolSize", "localResources"];
        assert_eq!(did_you_mean("imag", &fields), Some("image"));
        assert_eq!(did_you_mean("naem", &fields), Some("name"));
        assert_eq!(did_you_mean("pool_size", &fields), Some("poolSize"));
        assert_eq!(did_you_mean("PoolSize", &fields), Some("poolSize"));
        assert_eq!(
            did_you_mean("localresource", &fields),
            Some("localResources")
        );
        assert_eq!(did_you_mean("zzzzzz", &fields), None);
        assert_eq!(did_you_mean("image", &fields), None);
        assert_eq!(did_you_mean("", &fields), None);
        assert_eq!(did_you_mean("x", &[]), None);
    }
}
