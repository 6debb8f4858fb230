

def test_the_fullload_command(pair):
    import pytest
    from django.core.management import CommandError, call_command

    from integration_hub.inventory.models import ChannelStock

    sf, ch = _world(pair)
    call_command("stock", "fullload", "--channel", ch.key)
    assert ChannelStock.objects.filter(channel=ch, storefront_sku__startswith="SF-FL").count() == N
    with pytest.raises(CommandError):
        call_command("stock", "fullload", "--channel", "nope")
