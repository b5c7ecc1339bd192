//! A small command-line parser: `--name value` options, `--flag`s and positionals, with
//! errors that name the option. Enough for `free`'s few commands, without a dependency.

pub struct Args {
    rest: Vec<String>,
    /// The options taken so far: one still left after it was taken was given twice.
    taken: Vec<String>,
}

impl Args {
    pub fn from_env() -> Self {
        Args { rest: std::env::args().skip(1).collect(), taken: Vec::new() }
    }

    #[cfg(test)]
    pub fn from(items: &[&str]) -> Self {
        Args { rest: items.iter().map(|s| s.to_string()).collect(), taken: Vec::new() }
    }

    /// `--help` or `-h` anywhere.
    pub fn wants_help(&self) -> bool {
        self.rest.iter().any(|a| a == "--help" || a == "-h")
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Removes and returns the first argument that is not an option.
    pub fn next_positional(&mut self) -> Option<String> {
        let i = self.rest.iter().position(|a| !a.starts_with("--"))?;
        Some(self.rest.remove(i))
    }

    pub fn flag(&mut self, name: &str) -> bool {
        match self.rest.iter().position(|a| a == name) {
            Some(i) => {
                self.taken.push(self.rest.remove(i));
                true
            }
            None => false,
        }
    }

    pub fn optional(&mut self, name: &str) -> Result<Option<String>, String> {
        let Some(i) = self.rest.iter().position(|a| a == name) else { return Ok(None) };
        if i + 1 >= self.rest.len() || self.rest[i + 1].starts_with("--") {
            return Err(format!("{name} needs a value"));
        }
        let value = self.rest.remove(i + 1);
        self.taken.push(self.rest.remove(i));
        Ok(Some(value))
    }

    pub fn required(&mut self, name: &str) -> Result<String, String> {
        self.optional(name)?.ok_or_else(|| format!("{name} is required"))
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
            Some(a) if a.starts_with("--") => Err(self.unknown(a)),
            Some(a) => Err(format!("unexpected argument {a:?}")),
        }
    }

    fn unknown(&self, option: &str) -> String {
        if self.taken.iter().any(|t| t == option) {
            format!("{option} given twice; give it once")
        } else {
            format!("unknown option {option}")
        }
    }

    /// The one positional argument left; an error if there are none, several, or options
    /// nobody asked for.
    pub fn single_positional(mut self, what: &str) -> Result<String, String> {
        if let Some(unknown) = self.rest.iter().find(|a| a.starts_with("--")) {
            return Err(self.unknown(unknown));
        }
        match self.rest.len() {
            1 => Ok(self.rest.remove(0)),
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
        assert_eq!(a.required("--model").unwrap(), "m");
        assert_eq!(a.parsed("--max-new-tokens", 64usize).unwrap(), 5);
        assert!(a.flag("--json"));
        assert_eq!(a.single_positional("TEXT").unwrap(), "hello world");
    }

    #[test]
    fn mistakes_are_named() {
        let mut a = Args::from(&["--max-new-tokens", "many", "x"]);
        assert_eq!(a.parsed("--max-new-tokens", 1usize).unwrap_err(), "--max-new-tokens \"many\" is not a valid value");
        assert_eq!(Args::from(&["--model"]).required("--model").unwrap_err(), "--model needs a value");
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
}
