//! A coarse browser and OS name from the User-Agent, shown in the app so the user can tell
//! whether the login is theirs. Coarse on purpose: it is a hint, not an identification.

pub fn summarise(user_agent: &str) -> (Option<String>, Option<String>) {
    let ua = user_agent;
    let browser = if ua.contains("Edg/") {
        Some("Edge")
    } else if ua.contains("Firefox/") {
        Some("Firefox")
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") || ua.contains("CriOS/") {
        Some("Chrome")
    } else if ua.contains("Safari/") {
        Some("Safari")
    } else {
        None
    };
    let os = if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        Some("iOS")
    } else if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some("macOS")
    } else if ua.contains("Linux") {
        Some("Linux")
    } else {
        None
    };
    (browser.map(str::to_owned), os.map(str::to_owned))
}

/// A phone's browser, by the usual User-Agent markers (tablets count: the app is on them
/// too). A hint for which way in the wait page puts first; the page's CSS decides by size too.
pub fn is_phone(user_agent: &str) -> bool {
    ["iPhone", "iPad", "iPod", "Android", "Mobile"]
        .iter()
        .any(|m| user_agent.contains(m))
}

#[cfg(test)]
mod tests {
    use super::{is_phone, summarise};

    #[test]
    fn phones_are_told_from_computers() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
        let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36";
        let desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36";
        assert!(is_phone(iphone) && is_phone(android));
        assert!(!is_phone(desktop) && !is_phone(""));
    }

    #[test]
    fn common_browsers_are_named() {
        let firefox =
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0";
        assert_eq!(
            summarise(firefox),
            (Some("Firefox".into()), Some("Windows".into()))
        );
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
        assert_eq!(
            summarise(iphone),
            (Some("Safari".into()), Some("iOS".into()))
        );
        let edge = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36 Edg/130.0";
        assert_eq!(summarise(edge), (Some("Edge".into()), Some("macOS".into())));
        assert_eq!(summarise("curl/8.0"), (None, None));
    }
}
