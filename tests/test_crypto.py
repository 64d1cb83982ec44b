import pytest
from cryptography.fernet import Fernet

from gateway.crypto import Cipher, DecryptionError


def test_round_trip_does_not_store_plaintext() -> None:
    cipher = Cipher([Fernet.generate_key().decode()])
    token = cipher.encrypt("shop-token-123")
    assert "shop-token-123" not in token
    assert cipher.decrypt(token) == "shop-token-123"


def test_rotation_reencrypts_under_newest_key_so_old_key_can_go() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Cipher([old]).encrypt("exact-refresh")
    rotated = Cipher([new, old]).rotate(token)
    assert Cipher([new]).decrypt(rotated) == "exact-refresh"
    with pytest.raises(DecryptionError):
        Cipher([new]).decrypt(token)


def test_decryption_error_never_contains_the_secret() -> None:
    with pytest.raises(DecryptionError) as e:
        Cipher([Fernet.generate_key().decode()]).decrypt("garbage-token-value")
    assert "garbage-token-value" not in str(e.value)
