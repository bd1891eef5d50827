//! Look-alike skeletons of skill names.
//!
//! Two names with the same skeleton look the same to a person reading a list, so the registry
//! refuses a new skill whose skeleton another skill already has (`sk1ll` next to `skill`,
//! Cyrillic `ѕkіll` next to Latin `skill`). The skeleton follows the idea of Unicode TR39's
//! (map every character to a representative of its look-alike class) with a small table that
//! covers what can appear in a valid name: ASCII letters and digits that are confused with each
//! other (`0`/`o`, `1`/`l`/`i`, `5`/`s`, `rn`/`m`, `vv`/`w`), the Cyrillic and Greek lowercase
//! letters that look Latin, and fullwidth forms. Hyphens are dropped (`my-skill` and `myskill`
//! read alike). A name that is not covered keeps its character, so the check can only refuse
//! more, never let a look-alike through that the table knows about.

/// The skeleton of `name`.
pub fn skeleton(name: &str) -> String {
    let mapped: String = name
        .chars()
        .filter(|c| *c != '-')
        .flat_map(char::to_lowercase)
        .map(fold)
        .collect();
    mapped.replace("rn", "m").replace("vv", "w")
}

fn fold(c: char) -> char {
    match c {
        // Fullwidth ASCII.
        '\u{ff10}'..='\u{ff19}' | '\u{ff41}'..='\u{ff5a}' => {
            char::from_u32(c as u32 - 0xfee0).map_or(c, fold)
        }
        '0' | 'о' | 'ο' | 'σ' => 'o',
        // A thin vertical stroke: one class, since fonts differ on which of these look alike.
        '1' | 'i' | 'ӏ' | '|' | 'ı' | 'і' | 'ι' => 'l',
        '5' | 'ѕ' => 's',
        '2' => 'z',
        '8' => 'b',
        'а' | 'α' => 'a',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ε' => 'e',
        'ɡ' => 'g',
        'һ' => 'h',
        'ј' | 'ϳ' => 'j',
        'κ' | 'к' => 'k',
        'ո' => 'n',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѵ' | 'ν' => 'v',
        'ѡ' | 'ԝ' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        'τ' | 'т' => 't',
        'υ' => 'u',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::skeleton;

    #[test]
    fn look_alikes_share_a_skeleton_and_different_names_do_not() {
        for (a, b) in [
            ("skill", "sk1ll"),
            ("skill", "ѕkіll"),
            ("deploy-docs", "dep1oy-d0cs"),
            ("modern", "rnodern"),
            ("my-skill", "myskill"),
            ("pdf", "ｐｄｆ"),
        ] {
            assert_eq!(skeleton(a), skeleton(b), "{a} / {b}");
        }
        for (a, b) in [("skill", "skills"), ("pdf", "pdq"), ("deploy", "develop")] {
            assert_ne!(skeleton(a), skeleton(b), "{a} / {b}");
        }
    }
}
