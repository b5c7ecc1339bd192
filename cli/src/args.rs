//! A small command-line parser: `--name value` options, `--flag`s and positionals, with
//! errors that name the option. Enough for `free`'s few commands, without a dependency.
//! Arguments are kept as the OS gives them: a path may be any bytes, while text (a command,
//! a number, the text to generate from) must be UTF-8, or an error names its position.

use std::ffi::OsString;
use std::path::PathBuf;

/// One argument and its position on the command line (1: the first after `free`).
struct Arg {
    at: usize,
    value: OsString,
}

impl Arg {
    fn is(&self, name: &str) -> bool {
        self.value == name
    }

    fn is_option(&self) -> bool {
        self.value.as_encoded_bytes().starts_with(b"--")
    }

    /// The argument as text; `what` it is names it in the error.
    fn text(self, what: &str) -> Result<String, String> {
        let at = self.at;
        self.value
            .into_string()
            .map_err(|v| format!("argument {at} ({what}) is not valid UTF-8: {v:?}; pass it as UTF-8 (convert text with iconv -t UTF-8)"))
    }
}

pub struct Args {
    rest: Vec<Arg>,
    /// The options taken so far: one still left after it was taken was given twice.
    taken: Vec<String>,
}

impl Args {
    pub fn from_env() -> Self {
        Self::new(std::env::args_os().skip(1))
    }

    fn new(items: impl IntoIterator<Item = OsString>) -> Self {
        Args { rest: items.into_iter().enumerate().map(|(i, value)| Arg { at: i + 1, value }).collect(), taken: Vec::new() }
    }

    #[cfg(test)]
    pub fn from(items: &[&str]) -> Self {
        Self::new(items.iter().map(OsString::from))
    }

    /// `--help` or `-h` anywhere.
    pub fn wants_help(&self) -> bool {
        self.rest.iter().any(|a| a.is("--help") || a.is("-h"))
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Removes and returns the first argument that is not an option, as text.
    pub fn next_positional(&mut self, what: &str) -> Result<Option<String>, String> {
        let Some(i) = self.rest.iter().position(|a| !a.is_option()) else { return Ok(None) };
        self.rest.remove(i).text(what).map(Some)
    }

    pub fn flag(&mut self, name: &str) -> bool {
        match self.rest.iter().position(|a| a.is(name)) {
            Some(i) => {
                self.rest.remove(i);
                self.taken.push(name.into());
                true
            }
            None => false,
        }
    }

    /// Removes `name` and its value, if given.
    fn value(&mut self, name: &str) -> Result<Option<Arg>, String> {
        let Some(i) = self.rest.iter().position(|a| a.is(name)) else { return Ok(None) };
        if i + 1 >= self.rest.len() || self.rest[i + 1].is_option() {
            return Err(format!("{name} needs a value"));
        }
        let value = self.rest.remove(i + 1);
        self.rest.remove(i);
        self.taken.push(name.into());
        Ok(Some(value))
    }

    pub fn optional(&mut self, name: &str) -> Result<Option<String>, String> {
        self.value(name)?.map(|v| v.text(&format!("the value of {name}"))).transpose()
    }

    /// A path: any bytes the OS allows.
    pub fn optional_path(&mut self, name: &str) -> Result<Option<PathBuf>, String> {
        Ok(self.value(name)?.map(|v| PathBuf::from(v.value)))
    }

    pub fn required_path(&mut self, name: &str) -> Result<PathBuf, String> {
        self.optional_path(name)?.ok_or_else(|| format!("{name} is required"))
    }

    pub fn parsed<T: std::str::FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        match self.optional(name)? {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{name} {v:?} is not a valid value")),
        }
    }

    /// Nothing may be left: an error names the first unknown argument.
    pub fn finish(self) -> Result<(), String> {
        match self.rest.first() {
            None => Ok(()),
            Some(a) if a.is_option() => Err(self.unknown(a)),
            Some(a) => Err(format!("unexpected argument {:?}", a.value)),
        }
    }

    fn unknown(&self, option: &Arg) -> String {
        if self.taken.iter().any(|t| option.is(t)) {
            format!("{} given twice; give it once", option.value.to_string_lossy())
        } else {
            format!("unknown option {}", option.value.to_string_lossy())
        }
    }

    /// The one positional argument left, as text; an error if there are none, several, or
    /// options nobody asked for.
    pub fn single_positional(mut self, what: &str) -> Result<String, String> {
        if let Some(unknown) = self.rest.iter().find(|a| a.is_option()) {
            return Err(self.unknown(unknown));
        }
        match self.rest.len() {
            1 => self.rest.remove(0).text(what),
            0 => Err(format!("{what} is missing")),
            n => Err(format!("expected one {what}, got {n}: quote text that has spaces")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_flags_and_one_positional() {
        let mut a = Args::from(&["--model", "m", "--json", "hello world", "--max-new-tokens", "5"]);
        assert_eq!(a.required_path("--model").unwrap(), PathBuf::from("m"));
        assert_eq!(a.parsed("--max-new-tokens", 64usize).unwrap(), 5);
        assert!(a.flag("--json"));
        assert_eq!(a.single_positional("TEXT").unwrap(), "hello world");
    }

    #[test]
    fn mistakes_are_named() {
        let mut a = Args::from(&["--max-new-tokens", "many", "x"]);
        assert_eq!(a.parsed("--max-new-tokens", 1usize).unwrap_err(), "--max-new-tokens \"many\" is not a valid value");
        assert_eq!(Args::from(&["--model"]).required_path("--model").unwrap_err(), "--model needs a value");
        assert_eq!(Args::from(&["--bogus", "x"]).single_positional("TEXT").unwrap_err(), "unknown option --bogus");
        assert_eq!(Args::from(&["a", "b"]).single_positional("TEXT").unwrap_err(), "expected one TEXT, got 2: quote text that has spaces");
        let mut twice = Args::from(&["--limit", "3", "--limit", "5"]);
        assert_eq!(twice.parsed("--limit", 1usize).unwrap(), 3);
        assert_eq!(twice.finish().unwrap_err(), "--limit given twice; give it once");
        let mut flag_twice = Args::from(&["--json", "--json", "x"]);
        assert!(flag_twice.flag("--json"));
        assert_eq!(flag_twice.single_positional("TEXT").unwrap_err(), "--json given twice; give it once");
        assert!(Args::from(&["eval", "--help"]).wants_help());
    }

    /// A path may be any bytes; text must be UTF-8, and the error names its position.
    #[cfg(unix)]
    #[test]
    fn paths_take_any_bytes_and_text_must_be_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let latin1 = || std::ffi::OsStr::from_bytes(b"caf\xe9").to_os_string();
        let mut a = Args::new(["--data".into(), latin1(), "--task".into(), latin1(), latin1()]);
        assert_eq!(a.required_path("--data").unwrap().as_os_str(), latin1());
        assert_eq!(
            a.optional("--task").unwrap_err(),
            "argument 4 (the value of --task) is not valid UTF-8: \"caf\\xE9\"; pass it as UTF-8 (convert text with iconv -t UTF-8)"
        );
        assert!(a.single_positional("TEXT").unwrap_err().starts_with("argument 5 (TEXT) is not valid UTF-8"));
    }
}
