//! `config::parse` on arbitrary UTF-8: never panics; an error that TOML itself locates
//! (a span) carries a line and column within the text; `render` never panics.

pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match routevpn::config::parse(text, "fuzz.toml") {
        Ok(_) => {}
        Err(e) => {
            assert_eq!(e.line.is_some(), e.column.is_some(), "{e}");
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= text.split('\n').count(), "{e}");
            }
            if let Err(te) = toml::from_str::<toml::Table>(text) {
                if te.span().is_some() {
                    assert!(
                        e.line.is_some(),
                        "TOML error with a span lost its line: {e}"
                    );
                }
            }
            let _ = e.render(text, "error");
        }
    }
}
