"""Real Label Studio label configs (from LS templates) shared by the core tests."""

TEXT_CLASSIFICATION = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single" showInLine="true">
    <Choice value="Positive" background="green"/>
    <Choice value="Negative" predicted_values="neg, bad"/>
    <Choice value="Neutral" alias="neu"/>
  </Choices>
</View>"""

NER = """<View>
  <Labels name="label" toName="text">
    <Label value="PER" background="red" predicted_values="PERSON,person"/>
    <Label value="ORG" background="darkorange"/>
    <Label value="LOC" background="orange"/>
    <Label value="MISC" background="green"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""

IMAGE_BBOX = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Airplane" background="green"/>
    <Label value="Car" background="blue" predicted_values="car,truck,bus"/>
  </RectangleLabels>
</View>"""

OCR = """<View>
  <Image name="image" value="$ocr"/>
  <Labels name="label" toName="image">
    <Label value="Text" background="green"/>
    <Label value="Handwriting" background="blue"/>
  </Labels>
  <Rectangle name="bbox" toName="image" strokeWidth="3"/>
  <Polygon name="poly" toName="image" strokeWidth="3"/>
  <TextArea name="transcription" toName="image" editable="true" perRegion="true" required="true"
            maxSubmissions="1" rows="5" placeholder="Recognized Text" displayMode="region-list"/>
</View>"""

KEYPOINTS = """<View>
  <KeyPointLabels name="kp-1" toName="img-1">
    <Label value="Face" background="red"/>
    <Label value="Nose" background="green"/>
  </KeyPointLabels>
  <Image name="img-1" value="$img"/>
</View>"""

BRUSH_SAM = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Banana" background="#FF0000"/>
    <Label value="Orange" background="#0d14d3"/>
  </BrushLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true">
    <Label value="Banana" smart="true" background="#000000" showInline="true"/>
    <Label value="Orange" smart="true" background="#000000" showInline="true"/>
  </KeyPointLabels>
  <RectangleLabels name="tag3" toName="image" smart="true">
    <Label value="Banana" background="#000000" showInline="true"/>
  </RectangleLabels>
</View>"""

POLYGON = """<View>
  <Header value="Select label and click the image to start"/>
  <Image name="image" value="$image" zoom="true"/>
  <PolygonLabels name="label" toName="image" strokeWidth="3" pointSize="small" opacity="0.9">
    <Label value="Airplane" background="red"/>
    <Label value="Car" background="blue"/>
  </PolygonLabels>
</View>"""

NESTED_VIEWS = """<View>
  <View style="display: flex;">
    <View style="width: 50%">
      <Header value="Text"/>
      <Text name="text1" value="$text1" valueType="text"/>
      <HyperText name="html" value="$html"/>
    </View>
    <View style="width: 50%">
      <Choices name="topic" toName="text1,html" choice="multiple">
        <View style="display: flex"><View><Choice value="Sports"/></View>
          <Choice value="Politics" hint="elections"/></View>
        <Choice value="Tech"/>
      </Choices>
      <Rating name="rating" toName="text1" maxRating="5"/>
      <Number name="num" toName="text1"/>
    </View>
  </View>
  <Filter name="filter" toName="topic" hotkey="shift+f" minlength="0"/>
  <Taxonomy name="taxonomy" toName="text1">
    <Choice value="Archaea"/>
    <Choice value="Bacteria"><Choice value="Cyanobacteria"/></Choice>
  </Taxonomy>
</View>"""

DYNAMIC_LABELS = """<View>
  <Text name="text" value="$text"/>
  <Choices name="dyn" toName="text" value="$options" choice="multiple"/>
  <Labels name="spans" toName="text" value="$spans_options"/>
  <Labels name="static" toName="text"><Label value="A"/></Labels>
</View>"""

REPEATER = """<View>
  <Repeater on="$images" indexFlag="{{idx}}" mode="pagination">
    <Image name="page_{{idx}}" value="$images[{{idx}}].url"/>
    <RectangleLabels name="labels_{{idx}}" toName="page_{{idx}}">
      <Label value="Document Title"/>
      <Label value="Document Date"/>
    </RectangleLabels>
  </Repeater>
</View>"""

ALIASES = """<View>
  <Text name="text" value="$text"/>
  <Labels name="ner" toName="text">
    <Label value="Person" alias="PER" hotkey="p"/>
    <Label value="Organization" alias="ORG"/>
    <Label value="Location"/>
  </Labels>
  <Relations><Relation value="works_for"/><Relation value="lives_in" alias="li"/></Relations>
</View>"""

CONDITIONALS = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="Car"/><Label value="Person"/></RectangleLabels>
  <TextArea name="plate" toName="image" perRegion="true" whenLabelValue="Car"/>
  <Choices name="pose" toName="image" perRegion="true" whenTagName="box"><Choice value="Up"/></Choices>
  <Choices name="mood" toName="image" perRegion="true" whenChoiceValue="Up"><Choice value="Happy"/></Choices>
</View>"""

AUDIO_PARAGRAPHS = """<View>
  <Audio name="audio" value="$audio" hotkey="space"/>
  <TextArea name="transcription" toName="audio" rows="4" editable="true" maxSubmissions="1"/>
  <Paragraphs name="dialogue" value="$dialogue" layout="dialogue"/>
  <ParagraphLabels name="pl" toName="dialogue"><Label value="Greeting"/></ParagraphLabels>
  <Video name="video" valueList="$frames"/>
</View>"""

ALL = {
    "text_classification": TEXT_CLASSIFICATION,
    "ner": NER,
    "image_bbox": IMAGE_BBOX,
    "ocr": OCR,
    "keypoints": KEYPOINTS,
    "brush": BRUSH_SAM,
    "polygon": POLYGON,
    "nested_views": NESTED_VIEWS,
    "dynamic_labels": DYNAMIC_LABELS,
    "repeater": REPEATER,
    "aliases": ALIASES,
    "conditionals": CONDITIONALS,
    "audio_paragraphs": AUDIO_PARAGRAPHS,
}
