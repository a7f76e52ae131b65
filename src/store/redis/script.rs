//! Lua scripts called by their SHA1 (`EVALSHA`), with the code at hand for
//! when Redis does not have them (`EVAL`).

use ::redis::{Cmd, ToRedisArgs};

/// A Lua script of the store. Its hash is computed once, when it is made.
#[derive(Debug, Clone)]
pub struct Script {
    /// For logs and errors: which script failed.
    name: &'static str,
    code: &'static str,
    /// The SHA1 of `code` in lower-case hex, as `EVALSHA` wants it.
    sha: String,
}

impl Script {
    pub fn new(name: &'static str, code: &'static str) -> Script {
        Script {
            name,
            code,
            sha: ::redis::Script::new(code).get_hash().to_owned(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// A call of this script, to add keys and arguments to.
    pub fn call(&self) -> ScriptCall<'_> {
        ScriptCall {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// One call of a script: its keys (declared, so the call can run on Redis
/// Cluster) and its arguments.
#[derive(Debug, Clone)]
pub struct ScriptCall<'a> {
    script: &'a Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl<'a> ScriptCall<'a> {
    pub fn key(mut self, key: impl ToRedisArgs) -> Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    pub fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    pub fn script(&self) -> &'a Script {
        self.script
    }

    /// `EVALSHA sha numkeys key... arg...`
    pub fn evalsha_cmd(&self) -> Cmd {
        self.cmd("EVALSHA", self.script.sha.as_bytes())
    }

    /// `EVAL code numkeys key... arg...`: runs the script and leaves it in
    /// Redis's script cache.
    pub fn eval_cmd(&self) -> Cmd {
        self.cmd("EVAL", self.script.code.as_bytes())
    }

    fn cmd(&self, name: &str, script: &[u8]) -> Cmd {
        let mut cmd = ::redis::cmd(name);
        cmd.arg(script).arg(self.keys.len());
        for key in &self.keys {
            cmd.arg(&key[..]);
        }
        for arg in &self.args {
            cmd.arg(&arg[..]);
        }
        cmd
    }
}

/// The `EVAL` form of an `EVALSHA` command: the same keys and arguments with
/// the code in place of the hash. For the retry after `NOSCRIPT`, so a call
/// need not keep its keys and arguments twice.
pub(super) fn eval_of_evalsha(evalsha: &Cmd, code: &str) -> Cmd {
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(code);
    for arg in evalsha.args_iter().skip(2) {
        if let ::redis::Arg::Simple(arg) = arg {
            cmd.arg(arg);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_carry_the_hash_or_the_code_then_keys_then_arguments() {
        let script = Script::new("echo", "return ARGV[1]");
        // sha1("return ARGV[1]")
        assert_eq!(script.sha(), "098e0f0d1448c0a81dafe820f66d460eb09263da");
        let call = script.call().key("k1").key("k2").arg(7).arg("x");
        assert_eq!(
            call.evalsha_cmd().get_packed_command(),
            ::redis::cmd("EVALSHA")
                .arg(script.sha())
                .arg(2)
                .arg("k1")
                .arg("k2")
                .arg(7)
                .arg("x")
                .get_packed_command()
        );
        let eval = call.eval_cmd().get_packed_command();
        assert_eq!(
            eval,
            ::redis::cmd("EVAL")
                .arg("return ARGV[1]")
                .arg(2)
                .arg("k1")
                .arg("k2")
                .arg(7)
                .arg("x")
                .get_packed_command()
        );
        assert_eq!(
            eval_of_evalsha(&call.evalsha_cmd(), script.code()).get_packed_command(),
            eval
        );
    }
}
