//! HTML escaping, written once for every place the service puts text into HTML (the email
//! templates' HTML parts, the export's and search's marked snippets). It escapes what OWASP's
//! Cross-Site Scripting Prevention Cheat Sheet lists for HTML element content and quoted
//! attribute values: `&`, `<`, `>`, `"` and `'` (as `&#x27;`, the form the cheat sheet names;
//! `&apos;` is not an HTML 4 entity).

/// The entity that replaces `character` in HTML text, or `None` when it stands as it is.
pub const fn html_entity(character: char) -> Option<&'static str> {
    match character {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\'' => Some("&#x27;"),
        _ => None,
    }
}

/// Appends `character` to `out`, escaped ([`html_entity`]).
pub fn push_html_escaped(out: &mut String, character: char) {
    match html_entity(character) {
        Some(entity) => out.push_str(entity),
        None => out.push(character),
    }
}

/// `value` with the characters HTML gives meaning to replaced by their entities: safe as element
/// text and inside a double- or single-quoted attribute.
pub fn html_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        push_html_escaped(&mut escaped, character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_owasp_lists_is_escaped_and_nothing_else() {
        assert_eq!(
            html_escape(r#"<script>alert("x")</script> & 'y' é 1"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;y&#x27; é 1"
        );
    }

    #[test]
    fn escaping_twice_escapes_the_ampersands_of_the_first_pass() {
        assert_eq!(html_escape(&html_escape("&")), "&amp;amp;");
    }
}
