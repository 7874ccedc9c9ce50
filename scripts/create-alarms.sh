#!/usr/bin/env bash
# Create (or update: put-metric-alarm is idempotent) the CloudWatch alarms for the polybot host.
# Every alarm notifies the SNS topic when it fires and again when it clears.
#
# The bot alarms read the metrics that the CloudWatch agent scrapes from the bot's /metrics
# (cloudwatch/amazon-cloudwatch-agent.json + cloudwatch/prometheus.yaml): namespace PolymarketBot,
# dimension job=polybot (one bot per account on the host: job=polybot and bot_instance=NAME, see
# --instance). docs/operations.md, "Reading alerts", says what to do for each.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: create-alarms.sh --sns-topic-arn ARN [--instance NAME] [--instance-id ID] [--region REGION]
                        [--prefix NAME] [--loss-warn-fraction F] [--dry-run] [--help]

Alarms created:
  PREFIX-high-cpu               EC2 CPUUtilization average > 80 % for 2 x 5 min
  PREFIX-status-check           EC2 StatusCheckFailed >= 1 for 2 x 1 min
  PREFIX-health                 polybot_up < 1 for 3 x 1 min, or no metrics at all (the bot is
                                down, hung, or the agent cannot scrape it)
  PREFIX-trading-halted         polybot_trading_halted >= 1 (a risk halt or an operator halt)
  PREFIX-daily-loss-near-limit  today's loss >= F x the daily loss limit
                                (-polybot_daily_pnl_usd / polybot_daily_loss_limit_usd >= F)

With --instance NAME (one of several accounts on the host, polymarket-bot@NAME) the three bot
alarms are PREFIX-NAME-health, PREFIX-NAME-trading-halted and PREFIX-NAME-daily-loss-near-limit
and read that bot's series only (dimensions job=polybot, bot_instance=NAME); the two EC2 alarms
are the host's and keep their names, so running this once per account updates them in place.

Options:
  --sns-topic-arn ARN      where notifications go (required)
  --instance NAME          the bot's INSTANCE (default: the single bot, no instance)
  --instance-id ID         the bot's EC2 instance [default: this instance, from instance metadata]
  --region REGION          [default: $AWS_REGION, else us-east-1]
  --prefix NAME            alarm name prefix [default: polymarket-bot]
  --loss-warn-fraction F   share of the daily loss limit that warns [default: 0.8]
  --dry-run                print the aws commands instead of running them
  -h, --help               this text
Needs the aws CLI and cloudwatch:PutMetricAlarm (not needed for --dry-run).
USAGE
}

SNS_ARN=""
INSTANCE_ID=""
REGION="${AWS_REGION:-us-east-1}"
PREFIX="polymarket-bot"
LOSS_FRACTION="0.8"
DRY_RUN=0
INSTANCE=""
NAMESPACE="PolymarketBot"

while [ $# -gt 0 ]; do
    case "$1" in
        --sns-topic-arn) [ $# -ge 2 ] || { usage >&2; exit 2; }; SNS_ARN="$2"; shift 2 ;;
        --instance) [ $# -ge 2 ] || { usage >&2; exit 2; }; INSTANCE="$2"; shift 2 ;;
        --instance-id) [ $# -ge 2 ] || { usage >&2; exit 2; }; INSTANCE_ID="$2"; shift 2 ;;
        --region) [ $# -ge 2 ] || { usage >&2; exit 2; }; REGION="$2"; shift 2 ;;
        --prefix) [ $# -ge 2 ] || { usage >&2; exit 2; }; PREFIX="$2"; shift 2 ;;
        --loss-warn-fraction) [ $# -ge 2 ] || { usage >&2; exit 2; }; LOSS_FRACTION="$2"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "create-alarms.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$SNS_ARN" in
    arn:aws*:sns:*:*:*) ;;
    *) echo "create-alarms.sh: --sns-topic-arn must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)" >&2; exit 2 ;;
esac
# polybot's INSTANCE rule (polybot/config.py)
if [ -n "$INSTANCE" ] && ! [[ "$INSTANCE" =~ ^[a-z0-9][a-z0-9_-]{0,31}$ ]]; then
    echo "create-alarms.sh: --instance must be 1-32 lower-case letters, digits, - or _, starting with a letter or digit, got '$INSTANCE'" >&2
    exit 2
fi
case "$LOSS_FRACTION" in
    0.[0-9]*|1|1.0) ;;
    *) echo "create-alarms.sh: --loss-warn-fraction must be a decimal in (0, 1], got '$LOSS_FRACTION'" >&2; exit 2 ;;
esac

if [ -z "$INSTANCE_ID" ]; then
    # IMDSv2: a session token first (the launch steps in docs/operations.md require it).
    token="$(curl -fsS -m 2 -X PUT http://169.254.169.254/latest/api/token \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')" \
        || { echo "create-alarms.sh: not on EC2 (no instance metadata); pass --instance-id" >&2; exit 2; }
    INSTANCE_ID="$(curl -fsS -m 2 -H "X-aws-ec2-metadata-token: $token" \
        http://169.254.169.254/latest/meta-data/instance-id)"
fi
case "$INSTANCE_ID" in
    i-[0-9a-f]*) ;;
    *) echo "create-alarms.sh: --instance-id must look like i-0123456789abcdef0, got '$INSTANCE_ID'" >&2; exit 2 ;;
esac

if [ "$DRY_RUN" -eq 0 ]; then
    command -v aws >/dev/null 2>&1 || { echo "create-alarms.sh: the aws CLI is not installed" >&2; exit 1; }
fi

aws_cmd() {
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '%q ' aws "$@"
        printf '\n'
    else
        aws "$@"
        echo "create-alarms.sh: alarm $4 in place"
    fi
}

common=(--region "$REGION" --alarm-actions "$SNS_ARN" --ok-actions "$SNS_ARN")
# The bot's series: the single bot's carry job=polybot only; an instance's also bot_instance=NAME
# (cloudwatch/amazon-cloudwatch-agent.json keeps the two apart).
BOT_PREFIX="$PREFIX"
BOT_DIMENSIONS=("Name=job,Value=polybot")
DIMENSIONS_JSON='[{"Name": "job", "Value": "polybot"}]'
WHICH="polybot"
LOSS_WHO=""
if [ -n "$INSTANCE" ]; then
    BOT_PREFIX="$PREFIX-$INSTANCE"
    BOT_DIMENSIONS+=("Name=bot_instance,Value=$INSTANCE")
    DIMENSIONS_JSON="[{\"Name\": \"job\", \"Value\": \"polybot\"}, {\"Name\": \"bot_instance\", \"Value\": \"$INSTANCE\"}]"
    WHICH="polybot $INSTANCE"
    LOSS_WHO="$WHICH: "
fi

aws_cmd cloudwatch put-metric-alarm --alarm-name "$PREFIX-high-cpu" \
    --alarm-description "CPU above 80% for 10 minutes: a busy loop in the bot, or the instance is too small" \
    --namespace AWS/EC2 --metric-name CPUUtilization --dimensions "Name=InstanceId,Value=$INSTANCE_ID" \
    --statistic Average --period 300 --evaluation-periods 2 \
    --threshold 80 --comparison-operator GreaterThanThreshold "${common[@]}"

aws_cmd cloudwatch put-metric-alarm --alarm-name "$PREFIX-status-check" \
    --alarm-description "EC2 status check failing: the instance or its host is impaired" \
    --namespace AWS/EC2 --metric-name StatusCheckFailed --dimensions "Name=InstanceId,Value=$INSTANCE_ID" \
    --statistic Maximum --period 60 --evaluation-periods 2 \
    --threshold 1 --comparison-operator GreaterThanOrEqualToThreshold "${common[@]}"

# Missing data is breaching: a dead process, a hung one, or a dead agent all stop the metric.
aws_cmd cloudwatch put-metric-alarm --alarm-name "$BOT_PREFIX-health" \
    --alarm-description "$WHICH is down, hung or restarting (or its metrics stopped arriving)" \
    --namespace "$NAMESPACE" --metric-name polybot_up --dimensions "${BOT_DIMENSIONS[@]}" \
    --statistic Minimum --period 60 --evaluation-periods 3 \
    --threshold 1 --comparison-operator LessThanThreshold \
    --treat-missing-data breaching "${common[@]}"

aws_cmd cloudwatch put-metric-alarm --alarm-name "$BOT_PREFIX-trading-halted" \
    --alarm-description "$WHICH halted trading (daily loss, drawdown, kill file or operator); it resumes only when an operator says so" \
    --namespace "$NAMESPACE" --metric-name polybot_trading_halted --dimensions "${BOT_DIMENSIONS[@]}" \
    --statistic Maximum --period 60 --evaluation-periods 1 \
    --threshold 1 --comparison-operator GreaterThanOrEqualToThreshold \
    --treat-missing-data notBreaching "${common[@]}"

loss_metrics="$(cat <<JSON
[
  {"Id": "pnl", "ReturnData": false, "MetricStat": {"Period": 60, "Stat": "Minimum",
    "Metric": {"Namespace": "$NAMESPACE", "MetricName": "polybot_daily_pnl_usd",
               "Dimensions": $DIMENSIONS_JSON}}},
  {"Id": "limit", "ReturnData": false, "MetricStat": {"Period": 60, "Stat": "Maximum",
    "Metric": {"Namespace": "$NAMESPACE", "MetricName": "polybot_daily_loss_limit_usd",
               "Dimensions": $DIMENSIONS_JSON}}},
  {"Id": "used", "ReturnData": true, "Label": "share of the daily loss limit used",
    "Expression": "-pnl / limit"}
]
JSON
)"
aws_cmd cloudwatch put-metric-alarm --alarm-name "$BOT_PREFIX-daily-loss-near-limit" \
    --alarm-description "${LOSS_WHO}today's loss has used ${LOSS_FRACTION} of RISK_MAX_DAILY_LOSS; at 100% the bot halts itself" \
    --metrics "$loss_metrics" --evaluation-periods 1 \
    --threshold "$LOSS_FRACTION" --comparison-operator GreaterThanOrEqualToThreshold \
    --treat-missing-data notBreaching "${common[@]}"
