//! The shared retry rules in isolation: reading `Retry-After` in both of its forms.
//! The behaviour over the wire is tested against the mocks in `apns` and `fcm`.

use std::time::{Duration, UNIX_EPOCH};

use crate::transport::retry_after;

const NOW: u64 = 1_700_000_000;

fn http_date(unix: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix))
}

#[test]
fn retry_after_in_seconds() {
    assert_eq!(retry_after("1", NOW), Some(Duration::from_secs(1)));
    assert_eq!(retry_after(" 120 ", NOW), Some(Duration::from_secs(120)));
    assert_eq!(retry_after("0", NOW), Some(Duration::ZERO));
    // Too many digits for a u64 is a very long wait, not an unreadable header.
    assert_eq!(
        retry_after("99999999999999999999999", NOW),
        Some(Duration::from_secs(u64::MAX))
    );
}

#[test]
fn retry_after_as_an_http_date_is_counted_from_the_clock() {
    assert_eq!(
        retry_after(&http_date(NOW + 3600), NOW),
        Some(Duration::from_secs(3600))
    );
    // The two obsolete forms HTTP still allows.
    assert_eq!(
        retry_after("Tuesday, 14-Nov-23 22:13:22 GMT", NOW),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        retry_after("Tue Nov 14 22:13:25 2023", NOW),
        Some(Duration::from_secs(5))
    );
    // A date already past means "now", not a negative or huge wait.
    assert_eq!(retry_after(&http_date(NOW - 60), NOW), Some(Duration::ZERO));
}

#[test]
fn unreadable_retry_after_is_none() {
    for value in ["", "soon", "-1", "1.5", "Tue, 14 Nov 2023 25:61:00 GMT"] {
        assert_eq!(retry_after(value, NOW), None, "{value:?}");
    }
}
