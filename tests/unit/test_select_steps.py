"""main.steps parsing (trainflow.pipeline.steps.select_steps): 'all' alone or a list of known steps."""

from __future__ import annotations

import pytest

from trainflow.errors import ConfigError
from trainflow.pipeline.steps import STEPS, select_steps


@pytest.mark.parametrize("steps", ["all,train_model", "train_model, all", "all,batch_predict"])
def test_all_cannot_be_combined_with_other_steps(steps: str) -> None:
    """'all' is valid only alone: combined, it is refused as such, not called an unknown step."""
    with pytest.raises(ConfigError) as error:
        select_steps(steps)
    message = str(error.value)
    assert message.startswith("'all' cannot be combined with other steps in main.steps=")
    assert "unknown" not in message and "use 'all' alone" in message


def test_all_with_an_unknown_step_names_both_problems_and_only_the_unknown_name() -> None:
    with pytest.raises(ConfigError) as error:
        select_steps("all,bogus")
    message = str(error.value)
    assert message.startswith("unknown step 'bogus' and 'all' cannot be combined with other steps")
    assert "'all', " not in message
    assert ", ".join(STEPS) in message


def test_unknown_steps_are_listed_alone() -> None:
    with pytest.raises(ConfigError) as error:
        select_steps("split_data,trian_model,bogus")
    message = str(error.value)
    assert message.startswith("unknown step 'trian_model', 'bogus' in main.steps=")
    assert "cannot be combined" not in message and "'split_data'" not in message


def test_all_repeated_is_still_all() -> None:
    assert select_steps("all, all") == select_steps("all")
