from nla_lens.models.verbalizer import looks_non_english, parse_explanation


def test_parse_explanation_with_and_without_closing_tag():
    assert parse_explanation("<explanation> cats on mats </explanation> trailing") == ("cats on mats", False)
    assert parse_explanation("<explanation>a\nb</explanation>") == ("a\nb", False)
    assert parse_explanation("<explanation>cut off mid") == ("cut off mid", True)


def test_non_english_detection():
    assert not looks_non_english("The text is about a dog chasing a ball; next comes a verb.")
    assert looks_non_english("这是一个测试")
    assert looks_non_english("Talks about ㈎ a lot")
    assert looks_non_english("the marker <empty_output> again", marker="<empty_output>")
    assert looks_non_english("Это описание на русском языке")
    assert not looks_non_english("café naïve résumé are English loanwords in a sentence")
