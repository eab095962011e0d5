"""The per-host words of preImage/postImage (config/placeholders.py) and how they reach
a client in its task (plan.Task)."""

import pytest

from thepusher.config.placeholders import (
    MissingVar, default_hostname, environment, substitute, uses, values, vars_used)
from thepusher.plan import Task

WORDS = values(master="10.0.0.1", hostname="pc-01", address="10.0.0.21",
               mac="52:54:00:00:00:21", group="roomB12", image="debian12",
               host_vars={"room": "B12", "seat_no": "04"})


def test_every_word_is_replaced_by_the_hosts_value():
    script = "#MASTER# #HOSTNAME# #IP# #MAC# #GROUP# #IMAGE# #VAR:room# #VAR:seat_no#"
    assert substitute(script, WORDS) == \
        "10.0.0.1 pc-01 10.0.0.21 52:54:00:00:00:21 roomB12 debian12 B12 04"


def test_the_same_values_are_thepusher_environment_variables_with_upper_case_var_names():
    assert environment(WORDS) == {
        "THEPUSHER_MASTER": "10.0.0.1", "THEPUSHER_HOSTNAME": "pc-01",
        "THEPUSHER_IP": "10.0.0.21", "THEPUSHER_MAC": "52:54:00:00:00:21",
        "THEPUSHER_GROUP": "roomB12", "THEPUSHER_IMAGE": "debian12",
        "THEPUSHER_VAR_ROOM": "B12", "THEPUSHER_VAR_SEAT_NO": "04",
    }


def test_a_var_the_host_lacks_is_an_error_not_an_empty_string():
    with pytest.raises(MissingVar) as info:
        substitute("echo #VAR:room# #VAR:desk#", WORDS)
    assert info.value.name == "desk"


def test_other_hash_words_and_lower_case_are_left_alone():
    script = "# comment #\necho '#hostname#' #FOO# #VAR:bad-name# ##IP##"
    assert substitute(script, WORDS) == \
        "# comment #\necho '#hostname#' #FOO# #VAR:bad-name# #10.0.0.21#"


def test_substitution_is_one_pass_so_a_value_is_never_read_as_a_word():
    words = dict(WORDS, **{"VAR:room": "#IP#"})  # the config refuses '#'; the rule holds anyway
    assert substitute("#VAR:room#", words) == "#IP#"


def test_without_a_name_the_hostname_is_the_address_with_dashes():
    assert default_hostname("10.0.0.21") == "10-0-0-21"
    assert default_hostname("fd00::78:143") == "fd00--78-143"
    assert values(master="m", hostname="", address="10.0.0.21", mac="", group="g", image="i",
                  host_vars={})["HOSTNAME"] == "10-0-0-21"


def test_the_config_check_sees_which_vars_and_words_a_script_uses():
    script = "echo #VAR:room# #VAR:seat# #VAR:room# #GROUP#"
    assert vars_used(script) == ["room", "seat"]
    assert uses(script, "GROUP") and not uses(script, "IMAGE")


# -- in the task -------------------------------------------------------------------------

OLD_TASK = {"group": "g", "image": "i", "comment": "", "destination": "/dev/sda",
            "type": "IMG", "compression": "NONE", "verify": "write", "preImage": "",
            "postImage": ""}


def test_a_task_carries_who_the_host_is_and_reads_back_the_same():
    task = Task.from_json(dict(OLD_TASK, hostname="pc-01", address="10.0.0.21",
                               mac="52:54:00:00:00:21", vars={"room": "B12"},
                               personalize="linux"))
    assert (task.hostname, task.address, task.mac, task.vars, task.personalize) == \
        ("pc-01", "10.0.0.21", "52:54:00:00:00:21", {"room": "B12"}, "linux")
    assert Task.from_json(task.to_json()) == task


def test_a_task_from_a_master_without_identities_means_none():
    task = Task.from_json(OLD_TASK)
    assert (task.hostname, task.address, task.mac, task.vars, task.personalize) == \
        ("", "", "", {}, "")


@pytest.mark.parametrize("key, value, problem", [
    ("vars", {"room": 12}, "has var 'room' as int, not str"),
    ("vars", ["room"], "has key 'vars' as list, not dict"),
    ("hostname", None, "has key 'hostname' as NoneType, not str"),
])
def test_a_task_with_identities_of_the_wrong_type_is_refused(key, value, problem):
    from thepusher.plan import PlanError
    with pytest.raises(PlanError, match=problem):
        Task.from_json(dict(OLD_TASK, **{key: value}))
