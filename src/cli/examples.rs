//! The examples that end each command's `--help` (clap `after_help`): one
//! or two real invocations a user can copy.

pub(crate) const TOP: &str = "Examples:
  swamp repo init && swamp data put app/config --file config.json
  swamp exec -- ./deploy.sh";
pub(crate) const REPO_INIT: &str = "Examples:
  swamp repo init
  swamp --repo-dir ~/src/infra repo init";
pub(crate) const DATA: &str = "Examples:
  swamp data put app/config --file config.json
  swamp data get app/config --version 2";
pub(crate) const DATA_PUT: &str = "Examples:
  swamp data put app/config --file config.json
  terraform output -json | swamp data put infra/outputs";
pub(crate) const DATA_GET: &str = "Examples:
  swamp data get app/config > config.json
  swamp data get app/config --version 2";
pub(crate) const DATA_LIST: &str = "Examples:
  swamp data list
  swamp data list --json | jq -r '.items[].name'";
pub(crate) const DATA_VERSIONS: &str = "Examples:
  swamp data versions app/config
  swamp data versions app/config --json";
pub(crate) const DATA_RM: &str = "Examples:
  swamp data rm app/old-config";
pub(crate) const EXEC: &str = "Examples:
  swamp exec -- sh -c 'cp report.json \"$SWAMP_DATASTORE_DIR/outputs/\"'
  swamp exec --scope outputs/report -- ./build-report.sh
  swamp exec --read-only -- sh -c 'ls \"$SWAMP_DATASTORE_DIR/data\"'";
pub(crate) const DATASTORE: &str = "Examples:
  swamp datastore status
  swamp datastore setup s3 --bucket team-swamp --prefix infra";
pub(crate) const STATUS: &str = "Examples:
  swamp datastore status
  swamp datastore status --json";
pub(crate) const SETUP: &str = "Examples:
  swamp datastore setup s3 --bucket team-swamp --prefix infra
  swamp datastore setup filesystem --path /mnt/shared/swamp";
pub(crate) const SETUP_FILESYSTEM: &str = "Examples:
  swamp datastore setup filesystem --path /mnt/shared/swamp
  swamp datastore setup filesystem --path .swamp   # back to the default";
pub(crate) const SETUP_S3: &str = "Examples:
  swamp datastore setup s3 --bucket team-swamp --prefix infra --region eu-west-1
  swamp datastore setup s3 --bucket dev --endpoint-url http://127.0.0.1:8333";
pub(crate) const LOCK: &str = "Examples:
  swamp datastore lock status
  swamp datastore lock release --force";
pub(crate) const LOCK_STATUS: &str = "Examples:
  swamp datastore lock status
  swamp datastore lock status --json";
pub(crate) const LOCK_RELEASE: &str = "Examples:
  swamp datastore lock release --force
  swamp datastore lock release --force --scope data/app/config";
pub(crate) const REPAIR: &str = "Examples:
  swamp datastore repair
  swamp datastore repair --accept-bucket";
pub(crate) const SYNC: &str = "Examples:
  swamp datastore sync
  swamp datastore sync --pull --concurrency 64";
pub(crate) const COMPLETION: &str = "Examples:
  swamp completion bash > ~/.local/share/bash-completion/completions/swamp
  swamp completion zsh > \"${fpath[1]}/_swamp\"";
