from hf_vit_port_tools.cli import main


def test_demo_converts_with_verification_and_classifies(capsys):
    assert main(["demo", "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "verified the written repo, reloaded" in out
    lines = out.strip().splitlines()[-3:]
    assert all(line.strip()[0].isdigit() and "LABEL_" not in line for line in lines)


def test_list_names_the_official_checkpoints(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "imagenet21k/ViT-B_16" in out and "vit-l16-in21k-in1k-384" in out
