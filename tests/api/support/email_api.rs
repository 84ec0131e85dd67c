//! The email API the HTTP provider's tests send through: the simulator crate's email simulator
//! (Resend's dialect), in-process on a port of its own, its accepted emails and request log read
//! back through its handle.

use std::time::Duration;

use payment_simulator::email::{EmailSimulator, EmailSimulatorConfig, EmailSimulatorHandle};
use secrecy::SecretString;
use supportdesk::configuration::{
    EmailProviderSettings, EmailSettings, HttpEmailSettings, Settings,
};

use super::smtp::quick_retries;

/// A running email simulator.
pub(crate) async fn start_email_api() -> EmailSimulatorHandle {
    EmailSimulator::start(EmailSimulatorConfig::default())
        .await
        .expect("the email simulator starts")
}

/// The settings that send through `api` (`EMAIL_PROVIDER=http`): one send makes up to three
/// attempts of at most a second, a breaker that opens after three failures in a row for a
/// quarter of a second, and quick queue retries.
pub(crate) fn send_through(settings: &mut Settings, api: &EmailSimulatorHandle) {
    settings.notifications.public_base_url =
        Some(url::Url::parse("https://desk.example.com/").unwrap());
    settings.notifications.email = Some(EmailSettings {
        from: "Example Support <support@desk.example.com>".to_owned(),
        reply_to: Some("replies@desk.example.com".to_owned()),
        max_concurrency: 4,
        breaker_failure_threshold: 3,
        breaker_cool_down: Duration::from_millis(250),
        provider: EmailProviderSettings::Http(HttpEmailSettings {
            url: api.base_url().parse().expect("the simulator's URL"),
            api_key: SecretString::from(api.api_key().to_owned()),
            timeout: Duration::from_secs(1),
            max_attempts: 3,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            retry_budget_percent: 100,
            retry_budget_min_per_second: 100,
        }),
    });
    quick_retries(settings);
}

/// The HTTP provider's settings of `settings`, to adjust.
pub(crate) fn api_settings(settings: &mut Settings) -> &mut HttpEmailSettings {
    match settings
        .notifications
        .email
        .as_mut()
        .map(|email| &mut email.provider)
    {
        Some(EmailProviderSettings::Http(api)) => api,
        Some(EmailProviderSettings::Smtp(_)) | None => panic!("send_through first"),
    }
}
