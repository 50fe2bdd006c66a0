"""The managed node driven through its real lifecycle services from another process."""

import sys

import numpy as np
import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState

from ros_harness import Client, frame_message, NodeProcess
from test_node import node_args

pytestmark = pytest.mark.slow
MANAGED = [sys.executable, '-c', 'import sys; from dense_ood_ros.node import main_managed; '
                                 'sys.exit(main_managed())']
SCORE = '/perception_node/anomaly_score'


@pytest.fixture
def client():
    client = Client()
    yield client
    client.close()


def _call(client, service_type, name, request, node='/perception_node'):
    service = client.node.create_client(service_type, f'{node}/{name}')
    assert service.wait_for_service(timeout_sec=60.0), name
    future = service.call_async(request)
    assert client.spin_until(future.done, timeout=60.0), name
    return future.result()


def _state(client):
    return _call(client, GetState, 'get_state', GetState.Request()).current_state.id


def transition(client, transition_id, node='/perception_node'):
    """Ask `node` for a lifecycle transition through its service; return its success."""
    request = ChangeState.Request()
    request.transition.id = transition_id
    return _call(client, ChangeState, 'change_state', request, node).success


def _frames_arrive(client, publisher, seconds=3.0):
    """Publish frames for `seconds`; return whether any output came back."""
    count = len(client.messages(SCORE))
    msg = frame_message(np.zeros((32, 48, 3), np.uint8), stamp_ns=10**9)
    for _ in range(int(seconds / 0.25)):
        publisher.publish(msg)
        if client.spin_until(lambda: len(client.messages(SCORE)) > count, 0.25):
            return True
    return False


def test_transitions_publish_only_while_active(client, tiny_checkpoint_path):
    client.record(SCORE)
    publisher = client.publisher('/cam/image')
    with NodeProcess(*node_args(tiny_checkpoint_path), command=MANAGED) as node:
        assert _state(client) == State.PRIMARY_STATE_UNCONFIGURED, node.output
        assert transition(client, Transition.TRANSITION_CONFIGURE), node.output
        assert _state(client) == State.PRIMARY_STATE_INACTIVE
        assert not _frames_arrive(client, publisher), 'published while inactive'
        assert transition(client, Transition.TRANSITION_ACTIVATE)
        assert _state(client) == State.PRIMARY_STATE_ACTIVE
        assert _frames_arrive(client, publisher, seconds=60.0), node.output
        assert transition(client, Transition.TRANSITION_DEACTIVATE)
        client.spin_for(0.5)  # an output of a frame in flight may still arrive
        assert not _frames_arrive(client, publisher), 'published after deactivation'
        # The model stayed loaded: activating again serves at once.
        assert transition(client, Transition.TRANSITION_ACTIVATE)
        assert _frames_arrive(client, publisher, seconds=30.0), node.output
        assert transition(client, Transition.TRANSITION_DEACTIVATE)
        assert transition(client, Transition.TRANSITION_CLEANUP)
        assert _state(client) == State.PRIMARY_STATE_UNCONFIGURED
        assert transition(client, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert _state(client) == State.PRIMARY_STATE_FINALIZED
        assert node.interrupt() == 0, node.output
    assert 'Traceback' not in node.output


def test_a_bad_model_fails_configure_and_the_node_waits_unconfigured(client, tmp_path):
    missing = tmp_path / 'missing.pt'
    with NodeProcess(*node_args(missing), command=MANAGED) as node:
        assert not transition(client, Transition.TRANSITION_CONFIGURE)
        assert _state(client) == State.PRIMARY_STATE_UNCONFIGURED
        assert node.alive()
        assert node.interrupt() == 0, node.output
    assert 'configure failed' in node.output and 'missing.pt' in node.output
    assert 'Traceback' not in node.output


def test_shutdown_from_active_is_clean(client, tiny_checkpoint_path):
    with NodeProcess(*node_args(tiny_checkpoint_path), command=MANAGED) as node:
        assert transition(client, Transition.TRANSITION_CONFIGURE), node.output
        assert transition(client, Transition.TRANSITION_ACTIVATE)
        assert transition(client, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert _state(client) == State.PRIMARY_STATE_FINALIZED
        assert node.interrupt() == 0, node.output
    assert 'Traceback' not in node.output
