#!/usr/bin/env bash
# platform.sh - the payment platform's side (examples/notify/README.md): each
# paid order becomes one message of topic "orders" with the order id as its
# business key; the push group "merchant" delivers it to the merchant.
#
# usage: platform.sh ORDER...
set -euo pipefail
ctl=${ESCROWCTL:-escrowctl}
for order in "$@"; do
	"$ctl" send orders --key "$order" --prop event=order.paid \
		"{\"type\":\"order.paid\",\"order\":\"$order\",\"amount_cents\":$((RANDOM % 10000 + 100))}" >/dev/null
	echo "platform: $order paid, merchant will be notified"
done
