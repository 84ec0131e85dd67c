//! The path templates of `google.api.http` rules (`/v1/tickets/{ticket.id}`,
//! `/v1/tickets/{id}:assign`), parsed once from the descriptor set and matched against the path a
//! REST client called.
//!
//! Why the service needs them at all: Envoy's transcoder fills the request message from the path
//! first and from the JSON body (and query) after, so a body field can override a path variable
//! (`PATCH /v1/tickets/X` with `{"id": "Y"}` changes Y). Every path-based rule, audit line and
//! access log entry would then see X while Y changes. The transcoder cannot be told to let the
//! path win, so the service compares the variables of the path Envoy saw
//! (`x-envoy-original-path`) with the fields of the request it decoded
//! ([`crate::middleware`]'s path-binding layer), and refuses a mismatch.
//!
//! The grammar is the one of `google/api/http.proto`:
//! `Template = "/" Segments [ Verb ]`, `Segment = "*" | "**" | LITERAL | Variable`,
//! `Variable = "{" FieldPath [ "=" Segments ] "}"`, `Verb = ":" LITERAL`.

use std::fmt;

/// One segment of a template, and the variable it belongs to, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Matcher {
    /// Exactly this text.
    Literal(String),
    /// Any one segment (`*`, or a variable without `=`).
    One,
    /// Any number of segments, the rest of the path (`**`, last only).
    Rest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    matcher: Matcher,
    /// Index into [`PathTemplate::variables`].
    variable: Option<usize>,
}

/// A parsed path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
    verb: Option<String>,
    /// The field paths of the variables, in order (`ticket.id`).
    variables: Vec<String>,
}

/// Why a template cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

/// One variable of a matched path: its field path and the path's text for it, as sent
/// (percent-encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub field: String,
    pub raw: String,
}

impl Captured {
    /// Whether `value` (the request field) is what the path says. The transcoder decodes
    /// percent-escapes, except, depending on its `url_unescape_spec`, reserved characters; any of
    /// those readings is the path's value, so none of them is refused.
    pub fn agrees_with(&self, value: &str) -> bool {
        value == self.raw
            || decode(&self.raw, |_| true).as_deref() == Some(value)
            || decode(&self.raw, |byte| !RESERVED.contains(&byte)).as_deref() == Some(value)
            || decode(&self.raw, |byte| byte != b'/').as_deref() == Some(value)
    }
}

/// RFC 6570's reserved characters, which the transcoder leaves escaped by default.
const RESERVED: &[u8] = b":/?#[]@!$&'()*+,;=";

/// `text` with each `%XX` whose byte `decodes` accepts replaced by the byte; `None` when the
/// result is not UTF-8.
fn decode(text: &str, decodes: impl Fn(u8) -> bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|byte| decodes(*byte));
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl PathTemplate {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let fail = |why: &str| TemplateError(format!("path template `{text}`: {why}"));
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| fail("does not start with `/`"))?;
        // A verb follows the last `:` outside braces.
        let mut depth = 0_i32;
        let mut verb_at = None;
        for (index, character) in rest.char_indices() {
            match character {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 0 => verb_at = Some(index),
                _ => {}
            }
        }
        let (body, verb) = match verb_at {
            Some(index) => (&rest[..index], Some(rest[index + 1..].to_owned())),
            None => (rest, None),
        };
        let mut segments = Vec::new();
        let mut variables = Vec::new();
        let mut remaining = body;
        while !remaining.is_empty() {
            if let Some(inner) = remaining.strip_prefix('{') {
                let close = inner.find('}').ok_or_else(|| fail("unclosed `{`"))?;
                let (field, pattern) = match inner[..close].split_once('=') {
                    Some((field, pattern)) => (field, pattern),
                    None => (&inner[..close], "*"),
                };
                if field.is_empty() || pattern.is_empty() {
                    return Err(fail("an empty variable"));
                }
                let variable = variables.len();
                variables.push(field.to_owned());
                for part in pattern.split('/') {
                    segments.push(Segment {
                        matcher: matcher_of(part).ok_or_else(|| fail("an empty segment"))?,
                        variable: Some(variable),
                    });
                }
                remaining = &inner[close + 1..];
            } else {
                let end = remaining.find('/').unwrap_or(remaining.len());
                segments.push(Segment {
                    matcher: matcher_of(&remaining[..end])
                        .ok_or_else(|| fail("an empty segment"))?,
                    variable: None,
                });
                remaining = &remaining[end..];
            }
            match remaining.strip_prefix('/') {
                Some(after) if !after.is_empty() => remaining = after,
                Some(_) => return Err(fail("ends with `/`")),
                None if remaining.is_empty() => {}
                None => return Err(fail("a variable is followed by text in its segment")),
            }
        }
        if let Some(position) = segments
            .iter()
            .position(|segment| segment.matcher == Matcher::Rest)
            && position + 1 != segments.len()
        {
            return Err(fail("`**` is not the last segment"));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
            verb,
            variables,
        })
    }

    /// The template as written in the proto.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The field paths its variables name (`ticket.id`), in order.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// The variables of `path` (without its query), or `None` when `path` does not match. One
    /// trailing `/` is ignored, as the transcoder ignores it.
    pub fn captures(&self, path: &str) -> Option<Vec<Captured>> {
        let path = path.strip_prefix('/')?;
        let path = path.strip_suffix('/').unwrap_or(path);
        let path = match &self.verb {
            Some(verb) => path.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => path,
        };
        let parts: Vec<&str> = path.split('/').collect();
        let mut values: Vec<Vec<&str>> = vec![Vec::new(); self.variables.len()];
        let mut next = 0;
        for segment in &self.segments {
            let taken: &[&str] = match &segment.matcher {
                Matcher::Literal(literal) => {
                    (parts.get(next)? == literal).then_some(&parts[next..=next])?
                }
                Matcher::One => (!parts.get(next)?.is_empty()).then_some(&parts[next..=next])?,
                Matcher::Rest => &parts[next.min(parts.len())..],
            };
            next += taken.len();
            if let Some(variable) = segment.variable {
                values[variable].extend_from_slice(taken);
            }
        }
        (next == parts.len()).then(|| {
            self.variables
                .iter()
                .zip(values)
                .map(|(field, value)| Captured {
                    field: field.clone(),
                    raw: value.join("/"),
                })
                .collect()
        })
    }
}

fn matcher_of(part: &str) -> Option<Matcher> {
    match part {
        "" => None,
        "*" => Some(Matcher::One),
        "**" => Some(Matcher::Rest),
        literal => Some(Matcher::Literal(literal.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        PathTemplate::parse(template)
            .expect("a valid template")
            .captures(path)
            .map(|all| all.into_iter().map(|c| (c.field, c.raw)).collect())
    }

    fn pair(field: &str, raw: &str) -> (String, String) {
        (field.to_owned(), raw.to_owned())
    }

    #[test]
    fn a_nested_field_variable_is_read_from_its_segment() {
        assert_eq!(
            captured("/v1/tickets/{ticket.id}", "/v1/tickets/X"),
            Some(vec![pair("ticket.id", "X")])
        );
    }

    #[test]
    fn a_verb_is_matched_and_not_part_of_the_variable() {
        assert_eq!(
            captured("/v1/tickets/{id}:assign", "/v1/tickets/X:assign"),
            Some(vec![pair("id", "X")])
        );
        assert_eq!(
            captured("/v1/tickets/{id}:assign", "/v1/tickets/X:close"),
            None
        );
        assert_eq!(captured("/v1/tickets/{id}:assign", "/v1/tickets/X"), None);
    }

    #[test]
    fn literals_and_segment_counts_must_match() {
        let template = "/v1/tickets/{ticket_id}/comments";
        assert_eq!(
            captured(template, "/v1/tickets/T/comments"),
            Some(vec![pair("ticket_id", "T")])
        );
        assert_eq!(captured(template, "/v1/tickets/T/activity"), None);
        assert_eq!(captured(template, "/v1/tickets/T/comments/extra"), None);
        assert_eq!(captured(template, "/v1/tickets//comments"), None);
    }

    #[test]
    fn one_trailing_slash_is_ignored_as_the_transcoder_ignores_it() {
        assert_eq!(
            captured("/v1/tickets/{id}", "/v1/tickets/X/"),
            Some(vec![pair("id", "X")])
        );
        assert_eq!(captured("/v1/tickets/{id}", "/v1/tickets/X//"), None);
    }

    #[test]
    fn a_variable_with_a_pattern_captures_several_segments() {
        assert_eq!(
            captured("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books/2"),
            Some(vec![pair("name", "shelves/1/books/2")])
        );
        assert_eq!(
            captured("/v1/{path=**}", "/v1/a/b/c"),
            Some(vec![pair("path", "a/b/c")])
        );
    }

    #[test]
    fn templates_outside_the_grammar_are_refused() {
        for bad in [
            "v1/x",
            "/v1/{id",
            "/v1/{}",
            "/v1/**/x",
            "/v1/x/",
            "/v1/{id}x",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn a_field_agrees_with_any_decoding_of_its_segment_but_not_with_another_value() {
        let captured = Captured {
            field: "id".to_owned(),
            raw: "a%20b%2Fc".to_owned(),
        };
        assert!(captured.agrees_with("a b/c"));
        assert!(captured.agrees_with("a b%2Fc"));
        assert!(captured.agrees_with("a%20b%2Fc"));
        assert!(!captured.agrees_with("Y"));
        assert!(!captured.agrees_with(""));
    }
}

/// The path a REST client knows a request field by: `field` (the service's path in the request
/// message, `ticket.requester_email`, `statuses[2]`) relative to the JSON body when the rule's
/// `body` is a field of the request (`body: "ticket"`), each name in lowerCamelCase as proto3's
/// JSON mapping writes it (`requesterEmail`, `pageSize`). A field outside the body (a query
/// parameter, a path variable) keeps its whole path. Envoy's Lua filter names the transcoder's
/// own refusals the same way (docs/http-contract.md, "Field paths").
pub fn rest_field_path(field: &str, body: &str) -> String {
    let relative = match body {
        "" | "*" => field,
        body_field => field
            .strip_prefix(body_field)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(field),
    };
    let mut out = String::with_capacity(relative.len());
    let mut upper_next = false;
    for character in relative.chars() {
        match character {
            '_' => upper_next = true,
            '.' | '[' => {
                upper_next = false;
                out.push(character);
            }
            other if upper_next => {
                upper_next = false;
                out.extend(other.to_uppercase());
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod rest_field_path_tests {
    use super::rest_field_path;

    #[test]
    fn a_field_of_the_body_is_named_relative_to_it_in_lower_camel_case() {
        assert_eq!(
            rest_field_path("ticket.requester_email", "ticket"),
            "requesterEmail"
        );
        assert_eq!(
            rest_field_path("charge.amount.amount_minor", "charge"),
            "amount.amountMinor"
        );
    }

    #[test]
    fn a_whole_request_body_keeps_the_whole_path() {
        assert_eq!(
            rest_field_path("amount.amount_minor", "*"),
            "amount.amountMinor"
        );
    }

    #[test]
    fn query_parameters_and_path_variables_keep_their_whole_path() {
        assert_eq!(rest_field_path("page_size", ""), "pageSize");
        assert_eq!(rest_field_path("update_mask", "ticket"), "updateMask");
        assert_eq!(rest_field_path("statuses[2]", ""), "statuses[2]");
        assert_eq!(rest_field_path("ticket.id", "ticket"), "id");
    }
}
