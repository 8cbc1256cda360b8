"""Writes docs/en/coffee-machine.pdf (two pages, a text layer) from the text below; run it again
after editing the text: python tests/data/knowledge/make_pdf.py"""

from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

PAGES = [
    ("Brewmaster 3000 Espresso Machine", [
        ("Filling the water tank", "Fill the removable water tank with fresh, cold drinking "
         "water up to the MAX mark. Never use sparkling water or milk in the tank. The tank "
         "holds 1.8 litres."),
        ("Preheating", "Switch the machine on with the main switch at the back. The cup "
         "symbol blinks while the boiler heats up; after about 40 seconds it stays lit and "
         "the machine is ready to brew."),
        ("Grind setting", "The grinder has 12 settings. Turn the knob only while the grinder "
         "is running. A finer setting gives a stronger espresso; if the coffee runs out too "
         "slowly, choose a coarser setting."),
    ]),
    ("Cleaning and Descaling", [
        ("Descaling", "Descale the machine when the orange drop symbol lights up, or at the "
         "latest every three months. Dissolve one sachet of Brewmaster descaler in 0.5 litres "
         "of water, pour it into the tank and start the programme by holding the steam button "
         "for five seconds. Descaling takes about 25 minutes."),
        ("Error codes", "Error F2 means the brewing unit is not inserted correctly; take it "
         "out and insert it again until it clicks. Error F5 means the grinder is blocked by a "
         "foreign object; unplug the machine and call customer service."),
        ("Daily cleaning", "Empty the drip tray and the grounds container every day. Rinse the "
         "brewing unit under lukewarm water once a week; never put it in the dishwasher."),
    ]),
]


def main() -> None:
    out = Path(__file__).parent / "docs" / "en" / "coffee-machine.pdf"
    styles = getSampleStyleSheet()
    story = []
    for page, (title, sections) in enumerate(PAGES):
        if page:
            story.append(PageBreak())
        story.append(Paragraph(title, styles["Title"]))
        for heading, text in sections:
            story.append(Paragraph(heading, styles["Heading2"]))
            story.append(Paragraph(text, styles["BodyText"]))
    SimpleDocTemplate(str(out), pagesize=A4, invariant=True, title="Brewmaster 3000").build(story)


if __name__ == "__main__":
    main()
