"""Readers, access codes (stored only as salted hashes), audited sign-in and its rate limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from study import audit
from study.accounts import add_reader, authenticate, reset_code, set_active, sign_in_allowed
from study.errors import DuplicateReaderError, StudyError
from study.models import AuditEvent, Reader, utcnow
from study.security import split_code, verify_secret


def test_code_is_returned_once_and_stored_only_hashed(factory: Any) -> None:
    with factory.begin() as s:
        reader, code = add_reader(s, "  Dr.   Ada ", "researcher")
    assert reader.name == "Dr. Ada" and reader.role == "researcher"
    selector, secret = split_code(code)
    with factory.begin() as s:
        dump = " ".join(str(v) for row in s.execute(text("SELECT * FROM readers")).all() for v in row)
        dump += " ".join(str(v) for row in s.execute(text("SELECT * FROM audit_log")).all() for v in row)
        row = s.scalar(select(Reader))
    assert secret not in dump and code not in dump
    assert row.code_hash.startswith("scrypt$") and verify_secret(secret, row.code_hash)
    with factory.begin() as s:
        _, code2 = add_reader(s, "Bob")
        other = s.scalar(select(Reader).where(Reader.name == "Bob"))
    assert code2 != code and other.code_hash.split("$")[4] != row.code_hash.split("$")[4]  # distinct salts


def test_authenticate_accepts_typing_variants_and_audits(factory: Any) -> None:
    with factory.begin() as s:
        reader, code = add_reader(s, "ada")
    for typed in (code, code.lower(), code.replace("-", ""), f" {code.replace('-', ' ')} "):
        with factory.begin() as s:
            got = authenticate(s, typed, client_key="10.0.0.1")
            assert got is not None and got.id == reader.id
    wrong = code[:-1] + ("A" if code[-1] != "A" else "B")
    for bad in (wrong, "", "garbage", "ABCD-EFGH-JKMN-PQRS"):
        with factory.begin() as s:
            assert authenticate(s, bad, client_key="10.0.0.1") is None
    with factory.begin() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.client_key == "10.0.0.1")).all()
    assert actions.count(audit.SIGN_IN_OK) == 4 and actions.count(audit.SIGN_IN_FAILED) == 4


def test_duplicate_reader_and_bad_input(factory: Any) -> None:
    with factory.begin() as s:
        add_reader(s, "ada")
    with pytest.raises(DuplicateReaderError, match="already exists"):
        with factory.begin() as s:
            add_reader(s, "ada")
    with pytest.raises(StudyError, match="role"):
        with factory.begin() as s:
            add_reader(s, "x", "boss")
    with pytest.raises(StudyError, match="printable"):
        with factory.begin() as s:
            add_reader(s, "   ")


def test_reset_code_and_disable(factory: Any) -> None:
    with factory.begin() as s:
        _, old = add_reader(s, "ada")
    with factory.begin() as s:
        new = reset_code(s, "ada")
    with factory.begin() as s:
        assert authenticate(s, old) is None and authenticate(s, new) is not None
    with factory.begin() as s:
        set_active(s, "ada", False)
    with factory.begin() as s:
        assert authenticate(s, new) is None


def test_rate_limit_counts_failures_per_client_key(factory: Any) -> None:
    t0 = utcnow()
    for i in range(5):
        with factory.begin() as s:
            assert sign_in_allowed(s, "1.2.3.4", t0 + timedelta(seconds=i))
            authenticate(s, "WRONG-CODE", client_key="1.2.3.4", now=t0 + timedelta(seconds=i))
    with factory.begin() as s:
        assert not sign_in_allowed(s, "1.2.3.4", t0 + timedelta(seconds=10))
        assert sign_in_allowed(s, "5.6.7.8", t0 + timedelta(seconds=10))
        assert sign_in_allowed(s, "1.2.3.4", t0 + timedelta(minutes=10, seconds=5))
        assert sign_in_allowed(s, "1.2.3.4", t0 + timedelta(seconds=10), max_failures=6)
