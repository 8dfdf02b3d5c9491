"""Speech in dev-data's five languages from eSpeak NG, for the content student's training experiments.

    python scripts/espeak_speech_corpus.py --out data/espeak [--takes 6] [--seed 0]

The synthetic corpus (``voxflip corpus synth``) is English; a content student trained on it explains
none of Whisper's states on German, Spanish, French, Italian or Russian real voices
(docs/models.md, "A causal content student"). This writes each sentence below (written for this
purpose) ``--takes`` times with a random eSpeak NG voice variant, speaking rate and pitch, at 16 kHz,
and a speech-only manifest (sentences 0-15 of each language train, the rest are held out). eSpeak NG
(GPL-3, ``apt install espeak-ng``) is run as a separate program; the recordings are its output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SENTENCES = {
    "de": [
        "Am Morgen trinke ich gern einen heißen Kaffee mit Milch.",
        "Der Zug nach Hamburg fährt heute eine halbe Stunde später.",
        "Kannst du mir bitte sagen, wo die nächste Apotheke ist?",
        "Im Sommer schwimmen die Kinder jeden Tag im kühlen See.",
        "Meine Schwester wohnt seit drei Jahren in einer kleinen Stadt.",
        "Wir haben den ganzen Nachmittag im Garten gearbeitet.",
        "Das Wetter war so schlecht, dass wir zu Hause geblieben sind.",
        "Nach dem Essen gehen wir noch ein Stück am Fluss spazieren.",
        "Er hat das Buch in zwei Tagen von vorne bis hinten gelesen.",
        "Die Straßen sind nach dem Regen glatt und voller Pfützen.",
        "Ich suche schon seit Stunden meinen Schlüssel.",
        "Zwölf Vögel sitzen still auf dem langen Zaun.",
        "Sie singt jeden Freitag im Chor der alten Kirche.",
        "Bitte schließ das Fenster, es zieht hier ziemlich stark.",
        "Unser Nachbar repariert sein Fahrrad vor der Garage.",
        "Morgen früh fliegen wir für eine Woche nach Spanien.",
        "Der Bäcker an der Ecke backt das beste Brot der Stadt.",
        "Wie viele Stühle brauchen wir für die Feier am Samstag?",
        "Die Katze schläft den ganzen Tag auf dem warmen Sofa.",
        "Heute Abend kochen wir zusammen eine große Suppe.",
    ],
    "es": [
        "Por la mañana me gusta caminar junto al mar.",
        "Mi abuela prepara una tortilla de patatas riquísima.",
        "¿Sabes a qué hora abre la biblioteca los domingos?",
        "Los niños juegan al fútbol en la plaza del pueblo.",
        "Ayer llovió tanto que las calles se llenaron de agua.",
        "Necesito comprar pan, leche y un poco de queso.",
        "El tren llegó con veinte minutos de retraso.",
        "Mañana vamos a visitar a nuestros amigos en Sevilla.",
        "Ella toca la guitarra desde que era muy pequeña.",
        "El perro del vecino ladra cada vez que pasa un coche.",
        "Hace mucho calor, vamos a sentarnos a la sombra.",
        "Mi hermano trabaja en un hospital cerca de la estación.",
        "Cerramos la puerta con llave antes de salir de viaje.",
        "Las flores del jardín huelen muy bien en primavera.",
        "¿Quieres un café o prefieres un vaso de zumo?",
        "El profesor explicó la lección con mucha paciencia.",
        "Este invierno ha nevado en las montañas del norte.",
        "Compramos fruta fresca en el mercado del barrio.",
        "Llegaremos a casa antes de que se ponga el sol.",
        "Siempre leo un rato antes de dormirme.",
    ],
    "fr": [
        "Le matin, je prends mon café sur le balcon.",
        "Nous avons marché tout l'après-midi dans la forêt.",
        "Pouvez-vous me dire où se trouve la gare, s'il vous plaît?",
        "Ma voisine arrose ses fleurs tous les soirs.",
        "Il a plu toute la nuit et les rues sont mouillées.",
        "Les enfants jouent dans le parc après l'école.",
        "Je cherche un petit appartement près du centre.",
        "Mon frère répare son vélo dans le garage.",
        "Elle chante dans une chorale depuis dix ans.",
        "Le boulanger ouvre sa boutique très tôt le matin.",
        "Nous partons en vacances à la mer la semaine prochaine.",
        "Il fait froid, mets ton manteau et ton écharpe.",
        "Le chat dort au soleil sur le rebord de la fenêtre.",
        "J'ai oublié mes clés chez mes parents hier soir.",
        "Le train pour Lyon part dans un quart d'heure.",
        "Ce restaurant sert une excellente soupe à l'oignon.",
        "Les feuilles tombent des arbres en automne.",
        "Veux-tu du thé ou préfères-tu un jus d'orange?",
        "Nous dînerons ensemble samedi chez ma tante.",
        "Il lit le journal chaque matin avant le travail.",
    ],
    "it": [
        "La mattina bevo sempre un caffè al bar sotto casa.",
        "I bambini giocano a pallone nel cortile della scuola.",
        "Sai a che ora parte l'ultimo treno per Roma?",
        "Mia nonna prepara la pasta fatta in casa ogni domenica.",
        "Ieri sera ha piovuto e le strade sono ancora bagnate.",
        "Abbiamo passeggiato a lungo lungo la riva del lago.",
        "Devo comprare il pane, il latte e un po' di frutta.",
        "Mio fratello lavora in un negozio vicino alla stazione.",
        "Lei suona il pianoforte da quando era bambina.",
        "Il gatto dorme tutto il giorno sul divano.",
        "Fa molto caldo, sediamoci all'ombra di quell'albero.",
        "Chiudi la finestra, per favore, c'è troppo vento.",
        "Domani andiamo a trovare i nostri amici a Napoli.",
        "Il professore ha spiegato la lezione con calma.",
        "In primavera i fiori del giardino profumano tanto.",
        "Vuoi un bicchiere d'acqua o preferisci un succo?",
        "Quest'inverno è caduta molta neve in montagna.",
        "Il cane del vicino abbaia quando passa una macchina.",
        "Arriveremo a casa prima che faccia buio.",
        "Leggo sempre un libro prima di addormentarmi.",
    ],
    "ru": [
        "Утром я всегда пью крепкий чай с лимоном.",
        "Дети играют в футбол во дворе после школы.",
        "Скажите, пожалуйста, как пройти к вокзалу?",
        "Моя бабушка печёт вкусные пироги с капустой.",
        "Вчера весь день шёл дождь, и улицы мокрые.",
        "Мы долго гуляли по берегу широкой реки.",
        "Мне нужно купить хлеб, молоко и немного сыра.",
        "Мой брат работает в больнице недалеко от дома.",
        "Она играет на скрипке с самого детства.",
        "Кошка спит весь день на тёплом диване.",
        "Сегодня очень жарко, давай посидим в тени.",
        "Закрой, пожалуйста, окно, здесь сильно дует.",
        "Завтра мы поедем к друзьям в Петербург.",
        "Учитель спокойно объяснил новую тему.",
        "Весной в саду цветут яблони и вишни.",
        "Хочешь кофе или стакан холодного сока?",
        "Этой зимой в горах выпало много снега.",
        "Соседская собака лает на каждую машину.",
        "Мы вернёмся домой до наступления темноты.",
        "Перед сном я всегда читаю книгу.",
    ],
}
#: eSpeak NG voice variants (``-v LANG+VARIANT``), male and female
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
TRAIN_SENTENCES = 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--takes", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import soundfile as sf
    from scipy.signal import resample_poly

    from voxflip.engine.audio_io import read_audio

    rng = np.random.default_rng(args.seed)
    audio_dir = args.out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for language, sentences in SENTENCES.items():
        for i, text in enumerate(sentences):
            for take in range(args.takes):
                variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
                rate, pitch = int(rng.integers(120, 191)), int(rng.integers(25, 76))
                name = f"{language}-{i:02d}-{take}"
                with tempfile.TemporaryDirectory() as tmp:
                    raw = Path(tmp) / "x.wav"
                    subprocess.run(["espeak-ng", "-v", f"{language}+{variant}", "-s", str(rate), "-p", str(pitch),
                                    "-w", str(raw), text], check=True, capture_output=True)
                    audio, sr = read_audio(raw)
                x = resample_poly(np.asarray(audio, np.float64), 16_000 // 50, sr // 50) if sr != 16_000 else audio
                x = x / max(1e-9, float(np.max(np.abs(x)))) * 10 ** (rng.uniform(-12.0, -3.0) / 20.0)
                sf.write(audio_dir / f"{name}.wav", x.astype(np.float32), 16_000, subtype="PCM_16")
                rows.append({"id": name, "text": text, "language": language, "speech": f"audio/{name}.wav",
                             "speaker": f"espeak-{language}+{variant}", "source": "espeak-ng",
                             "split": "train" if i < TRAIN_SENTENCES else "test"})
    (args.out / "manifest.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} recordings -> {args.out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
