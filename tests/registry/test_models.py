"""An objective's fields are declared once in the registry (``ObjectiveBase``) and agree with
the bus contract's ``Objective``: the same names, defaults and value types."""

from __future__ import annotations

import typing

from services.registry.models import AISystem, ObjectiveBase, ObjectiveVersion
from services.registry.schemas import ObjectiveInput, ObjectivePublic, SystemInput
from shared.contracts import DEFAULT_LABEL_HORIZON_SECONDS, Objective, SystemSnapshot

IDENTITY_AND_CHANGE = {"id", "version", "system_id", "changed_by", "changed_at", "change_reason"}


def test_the_definition_is_the_contracts_objective_without_identity_and_change_record() -> None:
    assert set(ObjectiveBase.model_fields) == set(Objective.model_fields) - IDENTITY_AND_CHANGE


def test_the_definition_has_the_contracts_defaults_and_types() -> None:
    for name, field in ObjectiveBase.model_fields.items():
        contract = Objective.model_fields[name]
        assert field.is_required() == contract.is_required(), name
        if not field.is_required():
            assert field.get_default(call_default_factory=True) == contract.get_default(
                call_default_factory=True
            ), name
        assert typing.get_origin(field.annotation) == typing.get_origin(contract.annotation), name
        assert typing.get_args(field.annotation) == typing.get_args(contract.annotation), name


def test_the_table_the_input_and_the_answer_derive_from_the_definition() -> None:
    for model in (ObjectiveVersion, ObjectiveInput, ObjectivePublic):
        assert issubclass(model, ObjectiveBase)
        assert set(ObjectiveBase.model_fields) <= set(model.model_fields)


def test_every_layer_defaults_the_label_horizon_as_the_contract() -> None:
    for default in (
        SystemSnapshot.model_fields["label_horizon_seconds"].default,
        SystemInput.model_fields["label_horizon_seconds"].default,
        AISystem.model_fields["label_horizon_seconds"].default,
    ):
        assert default == DEFAULT_LABEL_HORIZON_SECONDS == 7 * 24 * 3600
