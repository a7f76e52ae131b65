"""A paho-mqtt subscriber for tests/burst_python.rs.

Usage: burst_subscriber.py HOST PORT CLIENT_ID FILTER EXPECTED

Connects with MQTT 3.1.1 and a clean session, subscribes to FILTER at QoS 1,
prints "subscribed" once the SUBACK grants it, then each message's payload on
a line of its own, as it arrives. Exits 0 after EXPECTED messages; exits 1,
saying why on stderr, if the broker refuses it or closes the connection
first: paho would otherwise reconnect with a new session, and the messages
lost meanwhile would look like a slow broker instead of a failure.
"""

import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main():
    host, port, client_id, topic_filter, expected = sys.argv[1:6]
    port, expected = int(port), int(expected)
    state = {"received": 0, "done": False, "failure": None}

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
        reconnect_on_failure=False,
    )

    def fail(client, why):
        if state["failure"] is None:
            state["failure"] = why
        client.disconnect()

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            fail(client, f"CONNACK refused: {reason_code}")
        else:
            client.subscribe(topic_filter, qos=1)

    def on_subscribe(client, userdata, mid, reason_code_list, properties):
        if any(rc.is_failure for rc in reason_code_list):
            fail(client, f"SUBACK refused: {reason_code_list}")
        else:
            print("subscribed", flush=True)

    def on_message(client, userdata, message):
        print(message.payload.decode(), flush=True)
        state["received"] += 1
        if state["received"] == expected:
            state["done"] = True
            client.disconnect()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        if not state["done"]:
            fail(
                client,
                f"disconnected after {state['received']} messages: {reason_code}",
            )

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.connect(host, port, keepalive=60)
    client.loop_forever()
    if state["failure"] is not None:
        print(state["failure"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
