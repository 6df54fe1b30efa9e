--- dingtalk.recall.cli.usage: the help texts of the CLI's commands.
local U = {}

U.main = [[
usage: dingtalk-recall <command> [options]

Recall (un-send) DingTalk group messages sent by an app bot.

commands:
  recall   --conversation CID --robot CODE [KEY ...]   recall keys (args, or stdin with - or a pipe)
  undo     --conversation CID [--last N | --since 10m | --tag T | --all] [--robot CODE]
                                                       recall messages recorded in the ledger
  send     --conversation CID --robot CODE --text "..." [--tag T] [--ttl 1h]
                                                       send a text message and record it
  sweep                                                recall recorded messages whose ttl elapsed
  ledger   [list|show KEY] [filters]                   show what the ledger holds
  token                                                check the credentials
  help [COMMAND]                                       help on a command

]]

U.recall = [[
usage: dingtalk-recall recall --conversation CID --robot CODE [KEY ...] [options]

Recalls the messages with these processQueryKeys, in batches of 20.  Keys come from the
arguments; with "-", or with no keys and stdin not a terminal, from stdin (whitespace
or newline separated; lines starting with # are skipped).  Keys the ledger holds are
marked recalled or failed there, so a later `undo` does not send them again.

  --conversation CID   the openConversationId the messages were sent to (required)
  --robot CODE         the robotCode that sent them (env DINGTALK_ROBOT_CODE)
  --qps N              requests per second (default 20)
  --concurrency N      requests in flight (default 4)
  --timeout S          per-request timeout in seconds

]]

U.undo = [[
usage: dingtalk-recall undo --conversation CID [--last N | --since 10m | --tag T | --all] [options]

Recalls messages recorded in the ledger (by `send`, a bot, or any client the ledger
is attached to) for this conversation.  Without a selector: the last message.

  --conversation CID   the group (required)
  --last N             the last N messages (1 to 500)
  --since DURATION     messages sent within DURATION (s, m, h, d; e.g. 10m, 1h30m)
  --tag T              messages sent with tag T
  --all                every recorded message of the group
  --robot CODE         only those sent by this robot

]]

U.send = [[
usage: dingtalk-recall send --conversation CID --robot CODE --text "..." [options]

Sends a text message (msgKey sampleText) to a group and records it in the ledger.
Prints the processQueryKey, so it pipes into `dingtalk-recall recall ... -`.

  --conversation CID   the group's openConversationId (required)
  --robot CODE         the robot to send as (required, or env DINGTALK_ROBOT_CODE)
  --text TEXT          the message (required)
  --tag T              a tag for `undo --tag` (repeatable)
  --ttl DURATION       recall it automatically (at the next `sweep`) after DURATION

]]

U.sweep = [[
usage: dingtalk-recall sweep [options]

Recalls every message in the ledger whose ttl has elapsed.  Run it from cron or a
systemd timer, e.g. every minute: * * * * * dingtalk-recall sweep --quiet

]]

U.ledger = [[
usage: dingtalk-recall ledger [list] [filters] [options]
       dingtalk-recall ledger show KEY [options]

Lists what the ledger holds, newest first, or shows one entry.

filters:
  --conversation CID   --robot CODE   --tag T   --since DURATION   --last N
  --state STATE        (sent, recalled, failed, ...)
  --due                only messages whose ttl has elapsed and are not yet recalled

]]

U.token = [[
usage: dingtalk-recall token [options]

Checks the credentials: with an app key and secret, fetches an access token (and
prints only that it worked); a static DINGTALK_ACCESS_TOKEN cannot be checked without
a call and is reported as set.

]]

U.common = [[
common options:
  --endpoint URL     API endpoint (env DINGTALK_ENDPOINT; default https://api.dingtalk.io)
  --ca-file FILE     CA bundle for a private CA (env DINGTALK_CA_FILE)
  --ledger PATH|URL  the ledger: a file, or redis://host:port/db (env DINGTALK_RECALL_LEDGER)
                     env DINGTALK_RECALL_REDIS=URL: one QPS budget and token for many hosts
  --config FILE      config file (default $XDG_CONFIG_HOME/dingtalk-recall/config.lua)
  --json             print one JSON document on stdout (always valid UTF-8, errors too)
  --dry-run          validate and show what would be done; send nothing
  --quiet            no progress bar and no notes on stderr
  --help             this text

credentials: DINGTALK_ACCESS_TOKEN, or DINGTALK_APP_KEY + DINGTALK_APP_SECRET, or the
config file (access_token, or app_key + app_secret; chmod 600).  Never printed.
exit status: 0 all recalled; 1 some keys failed; 2 usage or validation error (nothing
sent); 3 nothing could be done (credentials, config, ledger, network).
]]

return U
