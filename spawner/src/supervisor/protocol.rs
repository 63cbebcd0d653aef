//! The supervisor's socket protocol, written and read in one place: a request is one line, an
//! answer is one line (`ok[ <text>]` or `err <sentence>`). The words stay what they have
//! always been, so a new spawner still talks to the supervisors of games an older one started.

use std::time::Duration;

use nix::sys::signal::Signal;

/// What a spawner asks of a supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Is the supervisor there? Answered with the game's process id.
    Ping,
    /// Writes one line to the game's stdin.
    Console(String),
    /// Sends `signal` to the game's process group, then SIGKILL after `grace`.
    Stop {
        /// Time between the signal and SIGKILL.
        grace: Duration,
        /// The stop signal (never SIGKILL or SIGSTOP).
        signal: Signal,
    },
}

impl Request {
    /// The request as its line (without the newline). SIGTERM stops go in the short form,
    /// which supervisors started before stop signals existed also take.
    pub fn to_line(&self) -> String {
        match self {
            Request::Ping => "ping".into(),
            Request::Console(line) => format!("console {line}"),
            Request::Stop { grace, signal } if *signal == Signal::SIGTERM => {
                format!("stop {}", grace.as_millis())
            }
            Request::Stop { grace, signal } => {
                format!("stop {} {}", grace.as_millis(), *signal as i32)
            }
        }
    }

    /// Reads a request line (without its newline).
    pub fn parse(line: &str) -> Result<Self, String> {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            "ping" => Ok(Request::Ping),
            "console" => Ok(Request::Console(rest.to_owned())),
            "stop" => {
                let (grace_ms, signal) = parse_stop(rest)?;
                Ok(Request::Stop {
                    grace: Duration::from_millis(grace_ms),
                    signal,
                })
            }
            other => Err(format!("unknown request `{other}`")),
        }
    }
}

/// Reads the arguments of a stop request: `<grace_ms>` and an optional signal number.
fn parse_stop(args: &str) -> Result<(u64, Signal), String> {
    let mut words = args.split_whitespace();
    let grace_ms = words
        .next()
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or("stop needs a grace period in ms")?;
    let signal = match words.next() {
        None => Signal::SIGTERM,
        Some(w) => w
            .parse::<i32>()
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP))
            .ok_or_else(|| format!("stop: `{w}` is not a signal number a game can handle"))?,
    };
    if words.next().is_some() {
        return Err("stop takes a grace period in ms and a signal number".into());
    }
    Ok((grace_ms, signal))
}

/// A supervisor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done; with a value for requests that ask for one (empty otherwise).
    Ok(String),
    /// Refused or failed, with a sentence for the operator.
    Err(String),
}

impl Answer {
    /// The answer as its line (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Answer::Ok(v) if v.is_empty() => "ok".into(),
            Answer::Ok(v) => format!("ok {v}"),
            Answer::Err(e) => format!("err {e}"),
        }
    }

    /// Reads an answer line; None when it is neither form.
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim_end();
        if let Some(msg) = line.strip_prefix("err ") {
            Some(Answer::Err(msg.to_owned()))
        } else if line == "ok" {
            Some(Answer::Ok(String::new()))
        } else {
            line.strip_prefix("ok ")
                .map(|v| Answer::Ok(v.trim_start().to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_requests_carry_the_signal_and_the_old_form_still_means_sigterm() {
        assert_eq!(parse_stop("5000"), Ok((5000, Signal::SIGTERM)));
        assert_eq!(parse_stop(" 0 "), Ok((0, Signal::SIGTERM)));
        assert_eq!(parse_stop("250 2"), Ok((250, Signal::SIGINT)));
        assert_eq!(parse_stop("250 10"), Ok((250, Signal::SIGUSR1)));
        for bad in ["", "x", "5 9", "5 19", "5 999", "5 -1", "5 2 3", "5 INT"] {
            assert!(parse_stop(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Request::Stop {
                grace: Duration::from_secs(2),
                signal: Signal::SIGTERM
            }
            .to_line(),
            "stop 2000"
        );
    }

    #[test]
    fn every_request_and_answer_reads_back_as_written() {
        let mut requests = vec![
            Request::Ping,
            Request::Console("say hello  world".into()),
            Request::Console(String::new()),
        ];
        for signal in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGQUIT,
            Signal::SIGHUP,
        ] {
            requests.push(Request::Stop {
                grace: Duration::from_millis(1500),
                signal,
            });
        }
        for r in requests {
            assert_eq!(Request::parse(&r.to_line()), Ok(r.clone()), "{r:?}");
        }
        assert!(Request::parse("reboot now").is_err());
        for a in [
            Answer::Ok(String::new()),
            Answer::Ok("4242".into()),
            Answer::Err("the game server has exited".into()),
        ] {
            assert_eq!(Answer::parse(&a.to_line()), Some(a.clone()), "{a:?}");
        }
        assert_eq!(Answer::parse("okay"), None);
        assert_eq!(Answer::parse("ok 17\n"), Some(Answer::Ok("17".into())));
    }
}
