//! What each kind of notification says: its subject, a plain-text part and an HTML part, built by
//! small functions rather than a template engine (the two templates are a few lines each, and
//! the compiler checks them as it checks any code).
//!
//! The rules every message follows: each value a user wrote (a subject, a name) is
//! HTML-escaped in the HTML part ([`html_escape`]); anything that ends up in a header is one line
//! ([`single_line`]: CR, LF and other control characters become spaces, so nothing can start a
//! header of its own); links start with the configured public base URL.
//!
//! It lives in `domain/` because it is rendering, not a provider adapter: it needs nothing but
//! domain values, and both the notification worker (`service::notification_worker`, which
//! renders) and the SMTP adapter (`providers::email::smtp`, which keeps headers on one line) use
//! it, so it sits below both.

use uuid::Uuid;

use crate::domain::{
    CommentAddedData, EndpointDisabledData, Money, NotificationKind, PasswordLinkData,
    PasswordTokenKey, PasswordTokenSeed, PaymentNoticeData, TicketCreatedData, TicketSolvedData,
    html_escape,
};

/// A message's content, before it is addressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The longest subject sent, in characters (longer ones are cut).
const MAX_SUBJECT_CHARS: usize = 200;

/// The path, under the public base URL, of the page that takes a password-reset link's token
/// (`?account=<slug>&token=<token>`) and calls `ResetPassword` with it.
pub const RESET_PASSWORD_PATH: &str = "/reset-password";
/// The same for an invitation's link: the page calls `ResetPassword` too.
pub const ACCEPT_INVITATION_PATH: &str = "/accept-invitation";

/// Renders notification `kind` from its stored `data`. `ticket_id` is the ticket it is about,
/// `base_url` the public base URL (no trailing slash needed) and `token_key` the key that turns
/// a password link's stored seed into its token. An error says why the stored data cannot make a
/// message (a bug or a hand-edited row: no retry helps).
pub fn render(
    kind: NotificationKind,
    data: &serde_json::Value,
    ticket_id: Option<Uuid>,
    base_url: &url::Url,
    token_key: &PasswordTokenKey,
) -> Result<Rendered, String> {
    match kind {
        NotificationKind::PasswordReset | NotificationKind::Invitation => {
            let data: PasswordLinkData = serde_json::from_value(data.clone())
                .map_err(|error| format!("the stored data of {kind} is invalid: {error}"))?;
            Ok(password_link(kind, &data, base_url, token_key))
        }
        NotificationKind::ChargeReceipt | NotificationKind::RefundNotice => {
            let data: PaymentNoticeData = serde_json::from_value(data.clone())
                .map_err(|error| format!("the stored data of {kind} is invalid: {error}"))?;
            payment_notice(kind, &data)
        }
        NotificationKind::EndpointDisabled => {
            let data: EndpointDisabledData =
                serde_json::from_value(data.clone()).map_err(|error| {
                    format!("the stored data of endpoint_disabled is invalid: {error}")
                })?;
            Ok(endpoint_disabled(&data))
        }
        NotificationKind::TicketCreated => {
            let data: TicketCreatedData =
                serde_json::from_value(data.clone()).map_err(|error| {
                    format!("the stored data of ticket_created is invalid: {error}")
                })?;
            let ticket_id = ticket_id
                .ok_or_else(|| "a ticket_created notification names no ticket".to_owned())?;
            Ok(ticket_created(&data, ticket_id, base_url))
        }
        NotificationKind::CommentAdded => {
            let data: CommentAddedData = serde_json::from_value(data.clone())
                .map_err(|error| format!("the stored data of comment_added is invalid: {error}"))?;
            let ticket_id = ticket_id
                .ok_or_else(|| "a comment_added notification names no ticket".to_owned())?;
            Ok(comment_added(&data, ticket_id, base_url))
        }
        NotificationKind::TicketSolved => {
            let data: TicketSolvedData = serde_json::from_value(data.clone())
                .map_err(|error| format!("the stored data of ticket_solved is invalid: {error}"))?;
            let ticket_id = ticket_id
                .ok_or_else(|| "a ticket_solved notification names no ticket".to_owned())?;
            Ok(ticket_solved(&data, ticket_id, base_url))
        }
    }
}

/// The link of a password reset or an invitation: the page, the account and the token.
pub fn password_link_url(
    kind: NotificationKind,
    base_url: &url::Url,
    account_slug: &str,
    token: &str,
) -> String {
    let path = if kind == NotificationKind::Invitation {
        ACCEPT_INVITATION_PATH
    } else {
        RESET_PASSWORD_PATH
    };
    let mut link = format!("{}{path}", base_url.as_str().trim_end_matches('/'));
    link.push_str("?account=");
    link.extend(url::form_urlencoded::byte_serialize(
        account_slug.as_bytes(),
    ));
    link.push_str("&token=");
    link.extend(url::form_urlencoded::byte_serialize(token.as_bytes()));
    link
}

/// A password-reset link or an invitation, to the user it sets a password for.
fn password_link(
    kind: NotificationKind,
    data: &PasswordLinkData,
    base_url: &url::Url,
    token_key: &PasswordTokenKey,
) -> Rendered {
    let token = token_key.token(&PasswordTokenSeed::from_stored(&data.seed));
    let link = password_link_url(kind, base_url, &data.account_slug, token.reveal());
    let greeting = if data.display_name.trim().is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {},", single_line(&data.display_name))
    };
    let (subject, lead, action, unasked) = if kind == NotificationKind::Invitation {
        (
            "You have been invited to the support desk",
            "An administrator added you to the support desk. Choose your password to sign in:",
            "Choose your password",
            "If you did not expect this invitation, you can ignore this message.",
        )
    } else {
        (
            "Reset your password",
            "Someone (we hope you) asked to reset your password. Choose a new one here:",
            "Choose a new password",
            "If you did not ask for this, ignore this message: your password stays as it is.",
        )
    };
    let text = format!(
        "{greeting}\n\n\
         {lead}\n\n\
         {link}\n\n\
         The link works once, until {expires} (UTC).\n\
         {unasked}\n",
        expires = single_line(&data.expires_at),
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n\
         <p>{greeting}</p>\n\
         <p>{lead}</p>\n\
         <p><a href=\"{link}\">{action}</a></p>\n\
         <p>The link works once, until {expires} (UTC).<br>\n\
         {unasked}</p>\n\
         </body></html>\n",
        greeting = html_escape(&greeting),
        link = html_escape(&link),
        expires = html_escape(&single_line(&data.expires_at)),
    );
    Rendered {
        subject: subject.to_owned(),
        text,
        html,
    }
}

/// The notice to an account's admins that a webhook endpoint was disabled after failing for the
/// whole retry schedule (docs/webhooks.md, "Delivery").
fn endpoint_disabled(data: &EndpointDisabledData) -> Rendered {
    let url = single_line(&data.url);
    let endpoint = single_line(&data.endpoint_id);
    let subject = "A webhook endpoint was disabled".to_owned();
    let text = format!(
        "Hello,\n\n\
         Every delivery to your webhook endpoint {url} failed for the whole retry schedule \
         (about three days), so it was disabled. Its events are kept: enable the endpoint \
         (UpdateWebhookEndpoint, disabled: false) once it answers again, and it is sent what \
         it missed, in order.\n\n\
         Endpoint: {endpoint}\n",
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n\
         <p>Hello,</p>\n\
         <p>Every delivery to your webhook endpoint <strong>{url}</strong> failed for the whole \
         retry schedule (about three days), so it was disabled. Its events are kept: enable the \
         endpoint once it answers again, and it is sent what it missed, in order.</p>\n\
         <p>Endpoint: {endpoint}</p>\n\
         </body></html>\n",
        url = html_escape(&url),
        endpoint = html_escape(&endpoint),
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// A receipt for a charge, or the notice of a refund, to the charged customer: the amount with
/// its currency's exponent (integers only, [`Money`]'s `Display`).
fn payment_notice(kind: NotificationKind, data: &PaymentNoticeData) -> Result<Rendered, String> {
    let amount = Money::parse(data.amount_minor, &data.currency)
        .map_err(|error| format!("the stored amount of {kind} is invalid: {error}"))?;
    let charge = single_line(&data.charge_id);
    let (subject, text_body) = if kind == NotificationKind::RefundNotice {
        (
            format!("Refund of {amount}"),
            format!("We refunded {amount} of your payment {charge}."),
        )
    } else {
        (
            format!("Receipt for your payment of {amount}"),
            format!("We received your payment of {amount}. Thank you."),
        )
    };
    let text = format!(
        "Hello,\n\n\
         {text_body}\n\n\
         Amount: {amount}\n\
         Payment reference: {charge}\n",
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n\
         <p>Hello,</p>\n\
         <p>{body}</p>\n\
         <p>Amount: <strong>{amount}</strong><br>\n\
         Payment reference: {charge}</p>\n\
         </body></html>\n",
        body = html_escape(&text_body),
        amount = html_escape(&amount.to_string()),
        charge = html_escape(&charge),
    );
    Ok(Rendered {
        subject: truncated(&single_line(&subject), MAX_SUBJECT_CHARS),
        text,
        html,
    })
}

/// The notice that a ticket was solved, to its requester.
fn ticket_solved(data: &TicketSolvedData, ticket_id: Uuid, base_url: &url::Url) -> Rendered {
    let link = ticket_link(base_url, ticket_id);
    let subject = single_line(&format!("[{ticket_id}] Solved: {}", data.subject));
    let text = format!(
        "Hello,\n\n\
         Your request \"{subject}\" has been marked solved.\n\n\
         Your reference: {ticket_id}\n\
         If it is not solved for you, reopen it at: {link}\n",
        subject = data.subject,
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n\
         <p>Hello,</p>\n\
         <p>Your request &ldquo;{subject}&rdquo; has been marked solved.</p>\n\
         <p>Your reference: <strong>{ticket_id}</strong><br>\n\
         If it is not solved for you, <a href=\"{link}\">reopen it</a>.</p>\n\
         </body></html>\n",
        subject = html_escape(&data.subject),
        link = html_escape(&link),
    );
    Rendered {
        subject: truncated(&subject, MAX_SUBJECT_CHARS),
        text,
        html,
    }
}

/// A public comment from the desk, to the ticket's requester.
fn comment_added(data: &CommentAddedData, ticket_id: Uuid, base_url: &url::Url) -> Rendered {
    let link = ticket_link(base_url, ticket_id);
    let subject = single_line(&format!("[{ticket_id}] Re: {}", data.subject));
    let text = format!(
        "Hello,\n\n\
         There is a new reply on your request \"{subject}\":\n\n\
         {body}\n\n\
         Your reference: {ticket_id}\n\
         Follow it at: {link}\n\n\
         Reply to this message to answer.\n",
        subject = data.subject,
        body = data.body,
    );
    // The comment keeps its line breaks: each becomes a <br> after escaping.
    let body = html_escape(&data.body)
        .replace("\r\n", "\n")
        .replace('\n', "<br>\n");
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n\
         <p>Hello,</p>\n\
         <p>There is a new reply on your request &ldquo;{subject}&rdquo;:</p>\n\
         <blockquote>{body}</blockquote>\n\
         <p>Your reference: <strong>{ticket_id}</strong><br>\n\
         <a href=\"{link}\">Follow your request</a></p>\n\
         <p>Reply to this message to answer.</p>\n\
         </body></html>\n",
        subject = html_escape(&data.subject),
        link = html_escape(&link),
    );
    Rendered {
        subject: truncated(&subject, MAX_SUBJECT_CHARS),
        text,
        html,
    }
}

/// The acknowledgement of a new ticket: its subject, reference and link.
fn ticket_created(data: &TicketCreatedData, ticket_id: Uuid, base_url: &url::Url) -> Rendered {
    let link = ticket_link(base_url, ticket_id);
    let greeting = if data.requester_name.trim().is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {},", single_line(&data.requester_name))
    };
    let subject = single_line(&format!(
        "[{ticket_id}] We received your request: {}",
        data.subject
    ));
    let text = format!(
        "{greeting}\n\n\
         We received your request \"{subject}\" and will get back to you soon.\n\n\
         Your reference: {ticket_id}\n\
         Follow it at: {link}\n\n\
         Reply to this message to add to your request.\n",
        subject = data.subject,
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n\
         <p>{greeting}</p>\n\
         <p>We received your request &ldquo;{subject}&rdquo; and will get back to you soon.</p>\n\
         <p>Your reference: <strong>{ticket_id}</strong><br>\n\
         <a href=\"{link}\">Follow your request</a></p>\n\
         <p>Reply to this message to add to your request.</p>\n\
         </body></html>\n",
        greeting = html_escape(&greeting),
        subject = html_escape(&data.subject),
        link = html_escape(&link),
    );
    Rendered {
        subject: truncated(&subject, MAX_SUBJECT_CHARS),
        text,
        html,
    }
}

/// Where a person turns optional mail off (a page of the desk's front end calling
/// UpdateNotificationSettings), under the public base URL: the `List-Unsubscribe` of optional
/// mail. Appended to the base's path, as every link is (`Url::join` would replace its last
/// segment).
pub fn notification_settings_link(base_url: &url::Url) -> String {
    format!(
        "{}/settings/notifications",
        base_url.as_str().trim_end_matches('/')
    )
}

/// The page of ticket `ticket_id` under the public base URL.
pub fn ticket_link(base_url: &url::Url, ticket_id: Uuid) -> String {
    format!(
        "{}/tickets/{ticket_id}",
        base_url.as_str().trim_end_matches('/')
    )
}

/// `value` on one line: every control character (CR, LF, tab, ...) and every Unicode line or
/// paragraph separator becomes a space, runs of spaces become one, and the ends are trimmed. What
/// goes into a header passes through here, so no value can end the header and start another.
pub fn single_line(value: &str) -> String {
    value
        .split(|character: char| {
            character.is_control()
                || character.is_whitespace()
                || matches!(character, '\u{2028}' | '\u{2029}')
        })
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncated(value: &str, max_chars: usize) -> String {
    value.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> url::Url {
        url::Url::parse("https://desk.example.com/").unwrap()
    }

    #[test]
    fn links_stay_under_a_base_url_with_a_path() {
        for base in ["https://example.com/desk", "https://example.com/desk/"] {
            let base = url::Url::parse(base).unwrap();
            assert_eq!(
                notification_settings_link(&base),
                "https://example.com/desk/settings/notifications"
            );
            assert_eq!(
                ticket_link(&base, Uuid::nil()),
                format!("https://example.com/desk/tickets/{}", Uuid::nil())
            );
        }
        assert_eq!(
            notification_settings_link(&base()),
            "https://desk.example.com/settings/notifications"
        );
    }

    fn key() -> PasswordTokenKey {
        PasswordTokenKey::derive(b"a test server secret")
    }

    fn data(subject: &str, name: &str) -> serde_json::Value {
        serde_json::to_value(TicketCreatedData {
            subject: subject.to_owned(),
            requester_name: name.to_owned(),
        })
        .unwrap()
    }

    #[test]
    fn html_escaping_leaves_no_character_html_gives_meaning_to() {
        assert_eq!(
            html_escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;y&#x27;"
        );
        assert_eq!(html_escape("plain text é"), "plain text é");
    }

    #[test]
    fn a_header_value_never_spans_two_lines() {
        assert_eq!(
            single_line("Help\r\nBcc: attacker@example.com"),
            "Help Bcc: attacker@example.com"
        );
        assert_eq!(single_line("a\u{2028}b\u{85}c\td\0e"), "a b c d e");
        assert_eq!(single_line("  spaced   out  "), "spaced out");
    }

    #[test]
    fn the_acknowledgement_names_the_ticket_and_escapes_what_the_requester_wrote() {
        let ticket = Uuid::now_v7();
        let rendered = render(
            NotificationKind::TicketCreated,
            &data("<b>Broken</b>\r\nBcc: x@example.com", "Ann <Admin>\r\nX: y"),
            Some(ticket),
            &base(),
            &key(),
        )
        .unwrap();
        assert!(!rendered.subject.contains(['\r', '\n']));
        assert!(rendered.subject.contains(&ticket.to_string()));
        assert!(rendered.text.contains(&ticket.to_string()));
        assert!(rendered.html.contains(&ticket.to_string()));
        assert!(
            rendered
                .html
                .contains(&format!("https://desk.example.com/tickets/{ticket}"))
        );
        assert!(rendered.html.contains("&lt;b&gt;Broken&lt;/b&gt;"));
        assert!(rendered.html.contains("Ann &lt;Admin&gt; X: y"));
        assert!(!rendered.html.contains("<b>"));
    }

    #[test]
    fn a_comment_keeps_its_lines_and_every_character_it_wrote_is_escaped() {
        let ticket = Uuid::now_v7();
        let rendered = render(
            NotificationKind::CommentAdded,
            &serde_json::to_value(CommentAddedData {
                subject: "Printer".to_owned(),
                body: "Try <this>:\nturn it off & on".to_owned(),
            })
            .unwrap(),
            Some(ticket),
            &base(),
            &key(),
        )
        .unwrap();
        assert_eq!(rendered.subject, format!("[{ticket}] Re: Printer"));
        assert!(rendered.text.contains("Try <this>:\nturn it off & on"));
        assert!(
            rendered
                .html
                .contains("Try &lt;this&gt;:<br>\nturn it off &amp; on")
        );
    }

    #[test]
    fn the_solved_notice_links_to_the_ticket_and_escapes_its_subject() {
        let ticket = Uuid::now_v7();
        let rendered = render(
            NotificationKind::TicketSolved,
            &serde_json::to_value(TicketSolvedData {
                subject: "Paper <jam>".to_owned(),
            })
            .unwrap(),
            Some(ticket),
            &base(),
            &key(),
        )
        .unwrap();
        assert_eq!(rendered.subject, format!("[{ticket}] Solved: Paper <jam>"));
        assert!(rendered.html.contains("Paper &lt;jam&gt;"));
        assert!(
            rendered
                .text
                .contains(&format!("https://desk.example.com/tickets/{ticket}"))
        );
    }

    #[test]
    fn stored_data_that_does_not_fit_its_kind_is_refused_with_why() {
        let refused = render(
            NotificationKind::TicketCreated,
            &serde_json::json!({"subject": 3}),
            Some(Uuid::now_v7()),
            &base(),
            &key(),
        )
        .unwrap_err();
        assert!(refused.contains("ticket_created"), "{refused}");
        assert!(
            render(
                NotificationKind::TicketCreated,
                &data("s", ""),
                None,
                &base(),
                &key(),
            )
            .is_err()
        );
    }

    #[test]
    fn a_reset_link_carries_the_token_of_its_seed_and_escapes_the_name() {
        let seed = PasswordTokenSeed::generate();
        let data = serde_json::to_value(PasswordLinkData {
            seed: seed.as_str().to_owned(),
            account_slug: "acme".to_owned(),
            display_name: "Ann <b>\r\nBcc: x".to_owned(),
            expires_at: "2026-11-25T10:00:00Z".to_owned(),
        })
        .unwrap();
        let rendered = render(
            NotificationKind::PasswordReset,
            &data,
            None,
            &base(),
            &key(),
        )
        .unwrap();
        let token = key().token(&seed);
        let link = format!(
            "https://desk.example.com/reset-password?account=acme&token={}",
            token.reveal()
        );
        assert!(rendered.text.contains(&link), "{}", rendered.text);
        assert!(
            rendered.html.contains(&html_escape(&link)),
            "{}",
            rendered.html
        );
        assert!(!rendered.text.contains(seed.as_str()));
        assert!(
            rendered.html.contains("Ann &lt;b&gt; Bcc: x"),
            "{}",
            rendered.html
        );
        let invitation =
            render(NotificationKind::Invitation, &data, None, &base(), &key()).unwrap();
        assert!(
            invitation
                .text
                .contains("/accept-invitation?account=acme&token=")
        );
    }

    #[test]
    fn a_receipt_shows_the_amount_with_its_currencys_exponent() {
        for (minor, currency, shown) in [
            (1234, "USD", "12.34 USD"),
            (1000, "JPY", "1000 JPY"),
            (1234, "KWD", "1.234 KWD"),
        ] {
            let data = serde_json::to_value(PaymentNoticeData {
                charge_id: "c1".to_owned(),
                refund_id: None,
                amount_minor: minor,
                currency: currency.to_owned(),
            })
            .unwrap();
            let rendered = render(
                NotificationKind::ChargeReceipt,
                &data,
                None,
                &base(),
                &key(),
            )
            .unwrap();
            assert!(rendered.subject.contains(shown), "{}", rendered.subject);
            assert!(rendered.text.contains(shown));
            assert!(rendered.html.contains(shown));
            let refund =
                render(NotificationKind::RefundNotice, &data, None, &base(), &key()).unwrap();
            assert_eq!(refund.subject, format!("Refund of {shown}"));
        }
    }
}
